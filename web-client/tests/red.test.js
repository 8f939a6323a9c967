// Audio that survives loss (issue 11; docs/signaling-protocol.md, "RTP and SDP
// contract", RED): the host page publishes its microphone as RED (RFC 2198,
// each packet carries the previous Opus frame too). Two listeners sit behind
// the same link with 10 % random loss (nftables numgen): one negotiated RED
// and gets it passed through; the other's offer leaves RED out (an init
// script strips it, as a stack without RED would) and gets plain Opus, the
// primary frame taken out of each RED packet. Both lose the same share of
// packets; the RED listener's decoder fills far fewer of them with
// concealment, because the next packet brings the lost frame again.
//
// Runs inside the suite's private network namespace; the listeners' namespace
// is made and removed here (harness.js, farNamespace).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor, farNamespace, gotoSettled, startAcross } from './harness.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LOSS_PERCENT = 10;
const LISTEN_MS = 15000;

// Loss only: the rate cap is far above what two audio streams need.
const link = farNamespace('red', '10.81.0', { rate: '50mbit', burst: '256kb', lossPercent: LOSS_PERCENT });
const { server, near, far, close } = await startAcross(link);
after(close);

// The audio a page receives from the host, summed over its inbound audio
// streams (the host is the only one with a microphone here).
async function heard(page) {
  return page.evaluate(async () => {
    const stats = await window.sfuClient.meeting.pc.getStats();
    const out = { received: 0, lost: 0, bytes: 0, samples: 0, concealed: 0, events: 0 };
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio' || !s.packetsReceived) return;
      out.received += s.packetsReceived;
      out.lost += s.packetsLost ?? 0;
      out.bytes += s.bytesReceived ?? 0;
      out.samples += s.totalSamplesReceived ?? 0;
      // Concealment of lost audio (not of the silence between the fake beeps).
      out.concealed += (s.concealedSamples ?? 0) - (s.silentConcealedSamples ?? 0);
      out.events += s.concealmentEvents ?? 0;
    });
    return out;
  });
}

async function sentCodec(page) {
  return page.evaluate(async () => {
    const stats = await window.sfuClient.meeting.pc.getStats();
    let codec = null;
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'audio') codec = stats.get(s.codecId)?.mimeType ?? codec;
    });
    return codec;
  });
}

async function open(browser, link, label, { stripRed = false } = {}) {
  const ctx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`page ${label} error:`, e));
  if (stripRed) {
    // Before the client runs: every offer this page makes leaves RED out.
    await page.addInitScript(() => {
      const setLocal = RTCPeerConnection.prototype.setLocalDescription;
      const strip = (sdp) => {
        const pts = [...sdp.matchAll(/^a=rtpmap:(\d+) red\/48000\/2\r?$/gm)].map((m) => m[1]);
        let out = sdp;
        for (const pt of pts) {
          out = out.replace(new RegExp(`^a=(rtpmap|fmtp|rtcp-fb):${pt} .*\\r?\\n`, 'gm'), '');
          out = out.replace(/^(m=audio \S+ \S+)(.*)$/gm, (_, head, list) => head + list.split(' ').filter((p) => p !== pt).join(' '));
        }
        return out;
      };
      RTCPeerConnection.prototype.setLocalDescription = function (desc) {
        if (desc?.type === 'offer' && desc.sdp) desc = { type: 'offer', sdp: strip(desc.sdp) };
        return desc ? setLocal.call(this, desc) : setLocal.call(this);
      };
    });
  }
  await gotoSettled(page, link);
  await waitFor(`${label} joined`, () => page.evaluate(() => window.sfuClient?.meeting?.participantId != null), 30000);
  return page;
}

test(`with ${LOSS_PERCENT} % loss, a RED listener conceals fewer lost frames than a plain Opus one`, async () => {
  const room = 'hoi-chan-red';
  const host = await open(near, server.invite(room, 'Bác sĩ A', 'host'), 'host');
  const red = await open(far, server.invite(room, 'Trạm y tế B', 'viewer'), 'RED listener');
  const plain = await open(far, server.invite(room, 'Trạm y tế C', 'viewer'), 'plain listener', { stripRed: true });

  await waitFor('both listeners hear the host', async () => (await heard(red)).received > 50 && (await heard(plain)).received > 50, 20000);

  const [r0, p0] = [await heard(red), await heard(plain)];
  await sleep(LISTEN_MS);
  const [r1, p1] = [await heard(red), await heard(plain)];
  const share = (a, b) => {
    const received = b.received - a.received;
    const lost = b.lost - a.lost;
    return {
      bytesPerPacket: (b.bytes - a.bytes) / Math.max(1, received),
      lostPercent: (100 * lost) / Math.max(1, received + lost),
      concealedPercent: (100 * (b.concealed - a.concealed)) / Math.max(1, b.samples - a.samples),
      events: b.events - a.events,
    };
  };
  const [r, p] = [share(r0, r1), share(p0, p1)];
  const fmt = (x) => `${x.bytesPerPacket.toFixed(0)} B a packet, ${x.lostPercent.toFixed(1)} % of packets lost, ${x.concealedPercent.toFixed(1)} % of samples concealed in ${x.events} events`;
  console.log(`red: the host's stats name its outbound codec ${await sentCodec(host)}`);
  console.log(`red: RED listener ${fmt(r)}; plain listener ${fmt(p)} (${LOSS_PERCENT} % nftables drop, ${LISTEN_MS / 1000} s)`);

  // Chromium's stats name Opus for both; RED shows in the size: each packet
  // carries the previous frame too.
  assert.ok(r.bytesPerPacket > 1.6 * p.bytesPerPacket, `the RED listener gets RED: ${fmt(r)}; ${fmt(p)}`);
  // Both see the link's loss: the rule works on both.
  assert.ok(r.lostPercent > LOSS_PERCENT / 3 && p.lostPercent > LOSS_PERCENT / 3, `both lose packets: ${fmt(r)}; ${fmt(p)}`);
  // The redundancy restores lost frames: the decoder has to conceal far less
  // often (each event is a run of frames it had to invent; a loaded machine
  // adds some of its own to both).
  assert.ok(r.events < 0.6 * p.events && r.concealedPercent < p.concealedPercent, `RED conceals less: ${fmt(r)}; ${fmt(p)}`);
});
