// Native libwebrtc outside Chrome (@roamhq/wrtc in Node) and a Chromium page in
// one room (docs/interop.md). The Node client speaks the documented protocol
// itself (tests/interop/wrtc_client.js): it publishes drawn frames as three
// simulcast layers and a tone, receives Chromium's camera and microphone,
// then adds a screen share and receives Chromium's.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor } from './harness.js';
import { videosDecoding, audioArriving, layerSwitch } from './interop/common.js';
import { WrtcClient, syntheticMedia } from './interop/wrtc_client.js';

const server = await startServer();
const chromium = await launchBrowser();
const media = [];
let w = null;
after(async () => {
  w?.close();
  for (const m of media) m.stop();
  await chromium.close().catch(() => {});
  server.stop();
  // @roamhq/wrtc keeps the process alive after every peer connection is
  // closed (its native threads hold the event loop; stopping the tracks
  // first crashes it): end this test file's process once its results are
  // out (stdout is a pipe, written synchronously on Linux).
  setTimeout(() => process.exit(), 2000).unref();
});

// `joined.simulcast.layers` as sendEncodings, lowest first (as the web client's layers.js).
function sendEncodings(layers) {
  return [...layers].sort((x, y) => y.scale_down - x.scale_down)
    .map((l) => ({ rid: l.rid, scaleResolutionDownBy: l.scale_down, maxBitrate: l.max_kbps * 1000 }));
}

// Frames (or samples) of one subscribed track grow over 600 ms.
async function growing(client, pick, field) {
  const first = client.received().filter(pick);
  if (first.length === 0 || first.every((r) => r[field] === 0)) return false;
  await new Promise((r) => setTimeout(r, 600));
  const second = client.received().filter(pick);
  return second.some((b) => first.some((a) => a.trackId === b.trackId && b[field] > a[field])) ? second : false;
}

test('libwebrtc in Node (@roamhq/wrtc) and Chromium exchange audio and video', async (t) => {
  const ctx = await chromium.newContext();
  const a = await ctx.newPage();
  a.on('pageerror', (e) => console.error('Chromium page error:', e));
  await a.goto(server.invite('interop-wrtc', 'Chromium', 'host'));
  await waitFor('Chromium joined', () => a.evaluate(() => window.sfuClient?.meeting?.participantId));
  await waitFor('Chromium publishes', () => a.evaluate(() => window.sfuClient.meeting.local.get('camera')?.trackId));

  const cam = syntheticMedia({ width: 960, height: 540, fps: 15 });
  media.push(cam);
  w = new WrtcClient(server.invite('interop-wrtc', 'libwebrtc'), 'libwebrtc');

  await t.test('join, publish (simulcast) and subscribe: each decodes the other', async () => {
    const joined = await w.join();
    assert.equal(joined.simulcast.layers.length, 3);
    w.publish('camera', cam.video.createTrack(), sendEncodings(joined.simulcast.layers));
    w.publish('microphone', cam.audio.createTrack());
    await w.negotiate();
    assert.match(w.pc.localDescription.sdp, /a=simulcast:send q;h;f/);
    await waitFor('Chromium decodes libwebrtc', () => videosDecoding(a, 1), 30000);
    await waitFor('Chromium hears libwebrtc', () => audioArriving(a), 20000);
    await waitFor('libwebrtc receives Chromium\'s video', () => growing(w, (r) => r.kind === 'video', 'frames'), 30000);
    await waitFor('libwebrtc hears Chromium', async () => {
      const g = await growing(w, (r) => r.kind === 'audio', 'samples');
      return g && g.some((r) => r.energy > 0);
    }, 20000);
    assert.deepEqual(w.errors, []);
    console.log(`WRTC_JOIN_TO_FIRST_FRAME_MS ${(w.metrics.firstFrameAt - w.metrics.wsOpenAt).toFixed(0)}`);
  });

  await t.test('the server switches libwebrtc\'s simulcast layers for Chromium', async () => {
    const trackId = w.local.get('camera').trackId;
    assert.ok(trackId, 'camera has a track id');
    // Chromium asks for the low layer, then the high one (as for Firefox).
    const { low, high } = await layerSwitch(a, trackId, 180);
    console.log(`WRTC_SIMULCAST_HEIGHTS low=${low} high=${high}`);
  });

  await t.test('renegotiation: screen shares both ways', async () => {
    const screen = syntheticMedia({ width: 640, height: 360, fps: 5 });
    media.push(screen);
    w.publish('screen', screen.video.createTrack());
    await w.negotiate();
    await waitFor('Chromium decodes two videos from libwebrtc', () => videosDecoding(a, 2), 30000);
    await waitFor('Chromium shows a screen tile', () => a.locator('.tile.screen').count());
    await a.click('#share');
    await waitFor('libwebrtc receives Chromium\'s screen', () =>
      growing(w, (r) => r.kind === 'video' && r.source === 'screen', 'frames'), 30000);
    await waitFor('and still its camera', () => growing(w, (r) => r.kind === 'video' && r.source === 'camera', 'frames'));
    assert.deepEqual(w.errors, []);
  });

  await t.test('libwebrtc leaves and Chromium drops its tiles', async () => {
    w.close();
    w = null;
    await waitFor('Chromium grid updated', async () => (await a.locator('.tile:not(.local)').count()) === 0);
  });
  await ctx.close();
});
