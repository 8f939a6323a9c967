// Firefox ESR and Chromium in one room (docs/interop.md). Firefox opens the
// real web client from an invite link, driven over WebDriver BiDi by
// puppeteer-core (playwright-core cannot drive a stock Firefox), publishes its
// fake camera (as three simulcast encodings) and microphone, and receives
// Chromium's; then Chromium shares its screen and Firefox renegotiates for it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';
import { startServer, launchBrowser, waitFor } from './harness.js';
import { rtpStats, videosDecoding, audioArriving, pageJoinToFirstFrame, layerSwitch } from './interop/common.js';

const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

export async function launchFirefox() {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    // The server's self-signed certificate, as Chromium's --ignore-certificate-errors.
    acceptInsecureCerts: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      // Without a granted camera permission Firefox gathers only the "default"
      // address, found through a route to the internet, which a namespace with
      // only `lo` does not have: ICE then fails with no candidate at all.
      'permissions.default.camera': 1,
      'permissions.default.microphone': 1,
      // Loopback candidates (off outside tests), unobfuscated (no mDNS).
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'media.autoplay.default': 0,
      // Start the send-side estimate at 2.5 Mbit/s (kbit/s here) so that all
      // three layers flow at once: ramping up from Firefox's default start
      // took longer than 45 s on a loaded 2-core machine, and the ramp is
      // Firefox's business, not the server's.
      'media.peerconnection.video.start_bitrate': 2500,
      // No resolution cuts for CPU load (the libwebrtc overuse detector): on a
      // busy 2-core machine it kept Firefox on the low layer alone.
      'media.peerconnection.video.lock_scaling': true,
    },
  });
}

const server = await startServer();
const chromium = await launchBrowser();
const firefox = await launchFirefox();
after(async () => {
  await firefox.close().catch(() => {});
  await chromium.close().catch(() => {});
  server.stop();
});

test('Firefox ESR and Chromium exchange audio and video, simulcast and a screen share', async (t) => {
  const version = await firefox.version();
  console.log(`FIREFOX_VERSION ${version}`);
  const ctx = await chromium.newContext();
  const a = await ctx.newPage();
  a.on('pageerror', (e) => console.error('Chromium page error:', e));
  await a.goto(server.invite('interop-ff', 'Chromium', 'host'));
  await waitFor('Chromium joined', () => a.evaluate(() => window.sfuClient?.meeting?.participantId));
  const f = await firefox.newPage();
  f.on('pageerror', (e) => console.error('Firefox page error:', e));
  await f.goto(server.invite('interop-ff', 'Firefox'));

  await t.test('join, publish and subscribe: each decodes the other', async () => {
    await waitFor('Firefox joined', () => f.evaluate(() => window.sfuClient?.meeting?.participantId));
    await waitFor('Chromium decodes Firefox', () => videosDecoding(a, 1), 30000);
    await waitFor('Firefox decodes Chromium', () => videosDecoding(f, 1), 30000);
    await waitFor('Chromium hears Firefox', () => audioArriving(a), 20000);
    await waitFor('Firefox hears Chromium', () => audioArriving(f), 20000);
    const ms = await waitFor('Firefox first frame time', () => pageJoinToFirstFrame(f));
    console.log(`FIREFOX_JOIN_TO_FIRST_FRAME_MS ${ms.toFixed(0)}`);
  });

  await t.test('Firefox publishes its camera as three RID encodings, and the server switches them', async () => {
    // The web client asked for joined.simulcast's layers; Firefox keeps them.
    const rids = await f.evaluate(() => window.sfuClient.meeting.local.get('camera').transceiver.sender
      .getParameters().encodings.map((e) => e.rid));
    assert.deepEqual(rids, ['q', 'h', 'f']);
    const sdp = await f.evaluate(() => window.sfuClient.meeting.pc.localDescription.sdp);
    assert.match(sdp, /a=simulcast:send q;h;f/);
    const trackId = await waitFor('Firefox camera track id', () =>
      f.evaluate(() => window.sfuClient.meeting.local.get('camera').trackId));
    // Chromium asks for the low layer, then the high one: the picture it
    // decodes is small, then grows as the server switches to a higher RID on
    // its keyframe (once Firefox's bandwidth estimate has ramped up enough to
    // send more than the low layer).
    const { low, high } = await layerSwitch(a, trackId, 240);
    console.log(`FIREFOX_SIMULCAST_HEIGHTS low=${low} high=${high}`);
    // Firefox sends every layer it was asked for under its RID.
    const out = (await rtpStats(f)).outbound.filter((s) => s.kind === 'video' && s.packetsSent > 0);
    assert.ok(out.some((s) => s.rid === 'q'), `Firefox sends the q layer: ${JSON.stringify(out)}`);
    await waitFor('still decoding after the switch', () => videosDecoding(a, 1));
  });

  await t.test('renegotiation: a screen share from Chromium reaches Firefox as a second video', async () => {
    await a.click('#share');
    await waitFor('Firefox decodes two videos', () => videosDecoding(f, 2), 30000);
    await a.click('#share');
    await waitFor('Firefox back to one video', async () =>
      (await f.evaluate(() => [...window.sfuClient.meeting.remote.values()].filter((r) => r.info.source === 'screen').length)) === 0);
    await waitFor('Firefox still decodes the camera', () => videosDecoding(f, 1));
  });

  await t.test('Firefox leaves and Chromium drops its tile', async () => {
    await f.click('#leave');
    await waitFor('Chromium grid updated', async () => (await a.locator('.tile:not(.local)').count()) === 0);
  });
  await f.close();
  await ctx.close();
});
