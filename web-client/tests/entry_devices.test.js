// Getting in, as the user sees it: the root URL asks for an invite link and
// opens no camera; an invite opens the pre-join screen (title, name, role,
// preview, level meter, pickers); a blocked camera leaves a working
// microphone and a lasting message with "try again"; a viewer opens no
// camera or microphone and has no publish controls.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';
import { shot, openProbed } from './ui_helpers.js';
import { STRINGS } from '../public/i18n.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

const open = openProbed;

test('the root URL explains the invite link, opens no camera, and takes a pasted link', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await open(ctx, server.url, 'root');
  await waitFor('entry shown', () => page.locator('#entry').isVisible());
  const text = await page.locator('#entry').innerText();
  assert.ok(text.includes(STRINGS.vi.entryHeading), text);
  await shot(page, 'entry');
  await page.fill('#paste', 'not a link');
  await page.click('#paste-form button[type=submit]');
  assert.equal(await page.locator('#paste-error').textContent(), STRINGS.vi.badLink);
  assert.deepEqual(await page.evaluate(() => window.__gum), [], 'no camera or microphone asked for');
  // A pasted invite opens its pre-join screen; the token leaves the address bar.
  await page.fill('#paste', server.invite('giao-ban-dan', 'Phòng khám Đa khoa', 'participant', { prejoin: true, title: 'Giao ban tuần 48' }));
  await page.click('#paste-form button[type=submit]');
  await waitFor('pre-join shown', () => page.locator('#prejoin').isVisible());
  assert.ok(!(await page.evaluate(() => location.href)).includes('token='));
  await ctx.close();
});

test('the pre-join screen shows title, name and role, a preview and a level meter, and joins muted with the camera off', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const host = await open(ctx, server.invite('hoi-chan-x-quang', 'Bác sĩ Tâm', 'host'), 'host');
  await waitFor('host joined', () => host.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  const page = await open(ctx, server.invite('hoi-chan-x-quang', 'BS Nguyễn Văn An', 'participant', { prejoin: true, title: 'Hội chẩn X-quang' }), 'pre');
  await waitFor('pre-join shown', () => page.locator('#prejoin').isVisible());
  assert.equal(await page.locator('#prejoin-title').textContent(), 'Hội chẩn X-quang');
  const who = await page.locator('#prejoin-who').textContent();
  assert.ok(who.includes('BS Nguyễn Văn An') && who.includes(STRINGS.vi.role_participant), who);
  assert.ok((await page.title()).includes('Hội chẩn X-quang'), await page.title());
  await waitFor('preview plays', () => page.evaluate(() => document.getElementById('preview').videoWidth > 0));
  await waitFor('the level meter moves', () => page.evaluate(() => document.getElementById('mic-level').value > 0), 10000);
  const pickers = await page.evaluate(() => ({ cams: document.getElementById('pick-camera').options.length, mics: document.getElementById('pick-mic').options.length }));
  assert.ok(pickers.cams >= 1 && pickers.mics >= 1, JSON.stringify(pickers));
  await shot(page, 'prejoin');
  await page.check('#join-cam-off');
  await page.check('#join-muted');
  await page.click('#join-now');
  await waitFor('joined', () => page.evaluate(() => window.sfuClient?.meeting?.local.get('microphone')?.trackId != null));
  const state = await page.evaluate(() => ({
    camera: window.sfuClient.meeting.local.has('camera'),
    micMuted: window.sfuClient.meeting.local.get('microphone').muted,
    liveVideo: window.__tracks.filter((tr) => tr.kind === 'video' && tr.readyState === 'live').length,
    micPressed: document.getElementById('mic').getAttribute('aria-pressed'),
  }));
  assert.deepEqual(state, { camera: false, micMuted: true, liveVideo: 0, micPressed: 'true' }, 'camera closed, microphone muted');
  // The others see initials and a muted microphone.
  const key = `p-${await page.evaluate(() => window.sfuClient.meeting.participantId)}`;
  await waitFor('host sees initials', () => host.evaluate((k) => {
    const tile = document.querySelector(`#grid .tile[data-key="${k}"]`);
    const avatar = tile?.querySelector('.avatar');
    return tile?.classList.contains('cam-off') && tile.classList.contains('mic-muted') && avatar && getComputedStyle(avatar).display !== 'none' && avatar.textContent === 'BA';
  }, key));
  await shot(host, 'tile-initials');
  // Camera on during the call: opened again and published.
  await page.click('#cam');
  await waitFor('camera published', () => page.evaluate(() => window.sfuClient.meeting.local.get('camera')?.trackId != null));
  await ctx.close();
});

test('a blocked camera keeps a working microphone and a lasting message', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const host = await open(ctx, server.invite('hoi-chan-camera', 'Bác sĩ chủ trì', 'host'), 'host');
  await waitFor('host joined', () => host.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  const page = await open(ctx, server.invite('hoi-chan-camera', 'Trạm y tế xã', 'participant', { prejoin: true }), 'blocked', { denyVideo: true });
  await waitFor('camera message on the pre-join screen', () => page.locator('#prejoin-device-errors .device-error[data-source="camera"]').isVisible());
  assert.equal(await page.locator('#prejoin-device-errors .device-error span').textContent(), STRINGS.vi.dev_camera_denied);
  await waitFor('the microphone works (level meter)', () => page.evaluate(() => document.getElementById('mic-level').value > 0), 10000);
  await shot(page, 'prejoin-camera-blocked');
  // "Try again" asks again, and the message stays while it is still blocked.
  const asked = await page.evaluate(() => window.__gum.filter((c) => c.video).length);
  await page.click('#prejoin-device-errors .retry');
  await waitFor('asked again', () => page.evaluate((n) => window.__gum.filter((c) => c.video).length > n, asked));
  assert.equal(await page.locator('#prejoin-device-errors .device-error').isVisible(), true);
  await page.click('#join-now');
  await waitFor('microphone published', () => page.evaluate(() => window.sfuClient?.meeting?.local.get('microphone')?.trackId != null));
  // In the meeting the message is still there, a few seconds on.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(await page.locator('#device-errors .device-error[data-source="camera"]').isVisible(), true);
  assert.equal(await page.locator('#device-errors .retry').isVisible(), true);
  // The host hears it.
  const id = await page.evaluate(() => window.sfuClient.meeting.participantId);
  await waitFor('host hears the blocked page', async () => {
    const mids = await host.evaluate((pid) => [...window.sfuClient.meeting.remote.values()]
      .filter((r) => r.participantId === pid && r.info.kind === 'audio').map((r) => r.transceiver.mid), id);
    return (await inbound(host)).some((s) => s.kind === 'audio' && mids.includes(s.mid) && s.packetsReceived > 0 && s.totalAudioEnergy > 0);
  }, 20000);
  await shot(page, 'meeting-camera-blocked');
  await ctx.close();
});

test('a viewer opens no camera or microphone and has no publish controls', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const host = await open(ctx, server.invite('giao-ban-xem', 'Sở Y tế', 'host'), 'host');
  await waitFor('host joined', () => host.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  const viewer = await open(ctx, server.invite('giao-ban-xem', 'Sinh viên', 'viewer', { prejoin: true }), 'viewer');
  await waitFor('pre-join shown', () => viewer.locator('#prejoin').isVisible());
  assert.equal(await viewer.locator('#viewer-note').isVisible(), true);
  assert.equal(await viewer.locator('#prejoin-media').isVisible(), false, 'no preview, no pickers');
  await shot(viewer, 'prejoin-viewer');
  await viewer.click('#join-now');
  await waitFor('viewer decodes the host', async () => (await inbound(viewer)).some((s) => s.kind === 'video' && s.framesDecoded > 0), 25000);
  const v = await viewer.evaluate(() => ({
    gum: window.__gum.length,
    controls: ['mic', 'cam', 'share', 'devices-btn'].map((id) => document.getElementById(id).offsetParent !== null),
    localTile: document.querySelectorAll('#grid .tile.local').length,
  }));
  assert.deepEqual(v, { gum: 0, controls: [false, false, false, false], localTile: 0 });
  await viewer.keyboard.press('m');
  await viewer.keyboard.press('v');
  assert.equal(await viewer.evaluate(() => window.__gum.length), 0, 'shortcuts open nothing either');
  await shot(viewer, 'meeting-viewer');
  await ctx.close();
});
