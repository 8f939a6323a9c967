// Simulcast and subscription updates through the real server
// (docs/signaling-protocol.md, "Layers and subscription updates"):
// - a camera goes out as three encodings (rids q, h, f);
// - a subscriber that hides a tile pauses that subscription: its packets stop,
//   and come back (decoded) when the tile is shown again;
// - a camera nobody watches is told to stop all its layers (`publish_layers`
//   with `active: []`), and its encoders do.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// How long a counter has to stand still to count as stopped.
const STILL_MS = 2000;

// What a page sends of this part of the protocol, for the checks and for a
// failure's report.
function signalingProbe() {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const m = JSON.parse(data);
      if (m.type === 'update_subscription') window.__sent.push(m);
      // The first offer with the camera declares its layers; a later one may
      // mark a layer the server switched off as paused (~q).
      if (m.type === 'offer' && !window.__offerSimulcast?.length) window.__offerSimulcast = m.sdp.split(/\r?\n/).filter((l) => /^a=(rid|simulcast):/.test(l));
    } catch { /* not JSON */ }
    return send.call(this, data);
  };
}

async function openPage(ctx, link, label) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`page ${label} error:`, e));
  await page.addInitScript(signalingProbe);
  await page.goto(link);
  await waitFor(`${label} joined`, () => page.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  // And what it receives, from then on.
  await page.evaluate(() => {
    window.__got = [];
    window.sfuClient.meeting.sig.addEventListener('message', (e) => {
      if (['publish_layers', 'downlink', 'error'].includes(e.detail.type)) window.__got.push(e.detail);
    });
  });
  return page;
}

const probe = (page) => page.evaluate(() => ({ sent: window.__sent, got: window.__got, offer: window.__offerSimulcast }));

// The publisher's video encodings, by rid.
async function outbound(page) {
  return page.evaluate(async () => {
    const out = [];
    (await window.sfuClient.meeting.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.push({ rid: s.rid ?? null, bytesSent: s.bytesSent ?? 0, frameWidth: s.frameWidth ?? 0, active: s.active });
      }
    });
    return out;
  });
}

// Growth of each rid's bytesSent over `ms`.
async function sentGrowth(page, ms) {
  const first = await outbound(page);
  await sleep(ms);
  const second = await outbound(page);
  return second.map((b) => ({ ...b, grew: b.bytesSent - (first.find((a) => a.rid === b.rid)?.bytesSent ?? 0) }));
}

// The subscriber's receive stats for one m-line.
async function inboundOn(page, mid) {
  return (await inbound(page)).find((s) => s.mid === mid) ?? { packetsReceived: 0, bytesReceived: 0, framesDecoded: 0 };
}

// Counters of two m-lines over STILL_MS.
async function overStill(page, mids) {
  const before = await Promise.all(mids.map((m) => inboundOn(page, m)));
  await sleep(STILL_MS);
  const after = await Promise.all(mids.map((m) => inboundOn(page, m)));
  return after.map((b, i) => ({
    packets: b.packetsReceived - before[i].packetsReceived,
    bytes: b.bytesReceived - before[i].bytesReceived, // payload only: no headers, no padding
    frames: b.framesDecoded - before[i].framesDecoded,
  }));
}

// The track id and m-line on which `page` receives a participant's source.
function subscriptionOf(page, participantId, source) {
  return page.evaluate(({ pid, source }) => {
    for (const [trackId, r] of window.sfuClient.meeting.remote) {
      if (r.participantId === pid && r.info.source === source && r.transceiver.mid) return { trackId, mid: r.transceiver.mid };
    }
    return null;
  }, { pid: participantId, source });
}

async function decodingOn(page, mid) {
  const a = await inboundOn(page, mid);
  await sleep(600);
  const b = await inboundOn(page, mid);
  return b.framesDecoded > a.framesDecoded && b.packetsReceived > a.packetsReceived;
}

const setTileShown = (page, key, shown) => page.evaluate(({ key, shown }) => {
  window.sfuClient.grid.tiles.get(key).style.display = shown ? '' : 'none';
}, { key, shown });

test('a camera is sent as simulcast, and a hidden tile pauses its subscription', async (t) => {
  const room = 'giao-ban-lop';
  const pubCtx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const bigCtx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const smallCtx = await browser.newContext({ viewport: { width: 320, height: 240 } });
  const pub = await openPage(pubCtx, server.invite(room, 'Sở Y tế', 'host'), 'publisher');
  const pubId = await pub.evaluate(() => window.sfuClient.meeting.participantId);
  // One large tile (high) and one small (low): two layers are wanted.
  const big = await openPage(bigCtx, server.invite(room, 'Phòng lớn', 'viewer'), 'big viewer');
  const small = await openPage(smallCtx, server.invite(room, 'Điện thoại', 'viewer'), 'small viewer');
  const report = async () => JSON.stringify({
    publisher: await probe(pub), big: await probe(big), small: await probe(small), outbound: await outbound(pub).catch(() => null),
  });

  await t.test('the camera goes out as three encodings, at least two of them sending', async () => {
    const layers = await pub.evaluate(() => window.sfuClient.meeting.layers.map((l) => l.rid));
    assert.deepEqual(layers, ['q', 'h', 'f'], 'joined carries three layers');
    const { offer } = await probe(pub);
    assert.ok(offer?.includes('a=simulcast:send q;h;f'), `the offer declares the layers: ${JSON.stringify(offer)}`);
    const growing = await waitFor('two or more of q, h, f sending', async () => {
      const enc = await sentGrowth(pub, 1000);
      const rids = enc.map((e) => e.rid);
      if (!['q', 'h', 'f'].every((r) => rids.includes(r))) return false;
      const g = enc.filter((e) => e.grew > 0);
      return g.length >= 2 ? enc : false;
    }, 20000).catch(async (e) => { console.log(`layers: ${await report()}`); throw e; });
    console.log(`SIMULCAST_ENCODINGS ${JSON.stringify(growing)}`);
    // The microphone stays one encoding.
    const audioEncodings = await pub.evaluate(() => window.sfuClient.meeting.local.get('microphone').transceiver.sender.getParameters().encodings.length);
    assert.equal(audioEncodings, 1);
  });

  await t.test('hiding the tile stops that track\'s packets; showing it brings them back', async () => {
    const cam = await waitFor('big viewer subscribed to the camera', () => subscriptionOf(big, pubId, 'camera'));
    const mic = await waitFor('big viewer subscribed to the microphone', () => subscriptionOf(big, pubId, 'microphone'));
    await waitFor('big viewer decodes the camera', () => decodingOn(big, cam.mid), 25000);

    await setTileShown(big, `p-${pubId}`, false);
    // The connection itself stays alive: the same participant's audio keeps coming.
    await waitFor('the hidden camera\'s media stops', async () => {
      const [video, audio] = await overStill(big, [cam.mid, mic.mid]);
      return video.bytes === 0 && video.frames === 0 && audio.packets > 0;
    }, 15000).catch(async (e) => { console.log(`pause: ${await report()}`); throw e; });
    const paused = (await probe(big)).sent.filter((m) => m.track_id === cam.trackId);
    assert.deepEqual(paused.at(-1), { type: 'update_subscription', track_id: cam.trackId, paused: true, quality: 'low', pinned: false });
    // No media arrives for it. (Padding-only packets may: str0m's bandwidth
    // probe pads on a video SSRC. They carry no payload and cost no forwarding.)
    const [still] = await overStill(big, [cam.mid]);
    assert.equal(still.bytes, 0, `payload bytes on the paused camera's m-line in ${STILL_MS} ms`);
    assert.equal(still.frames, 0, `frames decoded on the paused camera's m-line in ${STILL_MS} ms`);

    await setTileShown(big, `p-${pubId}`, true);
    await waitFor('the camera is decoded again', () => decodingOn(big, cam.mid), 15000)
      .catch(async (e) => { console.log(`resume: ${await report()}`); throw e; });
    const sent = (await probe(big)).sent.filter((m) => m.track_id === cam.trackId);
    assert.equal(sent.at(-1).paused, false);
    assert.ok(sent.length <= 6, `a few updates, not a flood: ${JSON.stringify(sent)}`);
    // The small viewer's tile is small: it asked for the low layer only.
    const smallSent = (await probe(small)).sent;
    assert.ok(smallSent.some((m) => m.quality === 'low' && !m.paused), `small viewer: ${JSON.stringify(smallSent)}`);
  });
  for (const c of [pubCtx, bigCtx, smallCtx]) await c.close();
});

// Dynacast: the server may switch it on after the rest; a generous bound.
test('a camera nobody watches stops all its layers, and starts again when watched', async () => {
  const room = 'hoi-chan-dem';
  const pubCtx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const subCtx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const pub = await openPage(pubCtx, server.invite(room, 'Bác sĩ trực', 'host'), 'publisher');
  const pubId = await pub.evaluate(() => window.sfuClient.meeting.participantId);
  const sub = await openPage(subCtx, server.invite(room, 'Sinh viên', 'viewer'), 'viewer');
  const report = async () => JSON.stringify({ publisher: await probe(pub), viewer: await probe(sub), outbound: await outbound(pub).catch(() => null) });
  const cam = await waitFor('viewer subscribed to the camera', () => subscriptionOf(sub, pubId, 'camera'));
  await waitFor('viewer decodes the camera', () => decodingOn(sub, cam.mid), 25000);
  const trackId = await pub.evaluate(() => window.sfuClient.meeting.local.get('camera').trackId);

  // The only subscriber hides the tile.
  await setTileShown(sub, `p-${pubId}`, false);
  await waitFor('publish_layers with active: [] and every encoding stopped', async () => {
    const { got } = await probe(pub);
    const last = got.filter((m) => m.type === 'publish_layers' && m.track_id === trackId).at(-1);
    if (!last || last.active.length !== 0) return false;
    const enc = await sentGrowth(pub, STILL_MS);
    return enc.length > 0 && enc.every((e) => e.grew === 0);
  }, 20000).catch(async (e) => { console.log(`dynacast off: ${await report()}`); throw e; });
  const flags = await pub.evaluate(() => window.sfuClient.meeting.local.get('camera').transceiver.sender.getParameters().encodings.map((e) => e.active));
  assert.deepEqual(flags, [false, false, false]);

  // Watched again: some layer comes back, and the viewer decodes it.
  await setTileShown(sub, `p-${pubId}`, true);
  await waitFor('a layer sends again', async () => (await sentGrowth(pub, 1000)).some((e) => e.grew > 0), 20000)
    .catch(async (e) => { console.log(`dynacast on: ${await report()}`); throw e; });
  await waitFor('viewer decodes the camera again', () => decodingOn(sub, cam.mid), 15000);
  await pubCtx.close();
  await subCtx.close();
});
