// The people panel and the keyboard, as users see them: raised hands reach
// the host (tile badge, roster, notice) and the host lowers them all; mute
// all and give the floor; the M, V, H and ? shortcuts; another microphone
// during the call without leaving.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor } from './harness.js';
import { shot, openProbed } from './ui_helpers.js';
import { STRINGS } from '../public/i18n.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

async function open(ctx, link, label) {
  const page = await openProbed(ctx, link, label);
  await waitFor(`${label} joined`, () => page.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  return page;
}

const pressed = (page, id) => page.evaluate((id) => document.getElementById(id).getAttribute('aria-pressed'), id);

test('hands, mute all, the floor, shortcuts and a device switch', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const host = await open(ctx, server.invite('giao-ban-phat-bieu', 'Sở Y tế', 'host', { title: 'Giao ban sáng' }), 'host');
  const p = await open(ctx, server.invite('giao-ban-phat-bieu', 'TTYT Tiểu Cần'), 'P');
  const v = await open(ctx, server.invite('giao-ban-phat-bieu', 'Sinh viên Y6', 'viewer'), 'V');
  await waitFor('P publishes', () => p.evaluate(() => window.sfuClient.meeting.local.get('microphone')?.trackId != null));
  const pId = await p.evaluate(() => window.sfuClient.meeting.participantId);
  const vId = await v.evaluate(() => window.sfuClient.meeting.participantId);
  await host.click('#people-btn');
  assert.equal(await pressed(host, 'people-btn'), 'true');

  // P raises a hand with H, the viewer with the button.
  assert.equal(await pressed(p, 'hand'), 'false');
  await p.locator('body').press('h');
  await v.click('#hand');
  await waitFor('P sees its own hand up', async () => (await pressed(p, 'hand')) === 'true');
  await waitFor('the host sees both hands', () => host.evaluate(({ pId, vId }) =>
    document.querySelector(`#grid .tile[data-key="p-${pId}"]`)?.classList.contains('hand-raised')
    && document.querySelector(`#grid .tile[data-key="p-${vId}"]`)?.classList.contains('hand-raised')
    && document.querySelectorAll('#people-list .state .hand').length === 2, { pId, vId }));
  const notices = await host.locator('#live').textContent();
  assert.ok(notices.includes(STRINGS.vi.handUp.replace('{name}', 'TTYT Tiểu Cần')), notices);
  await shot(host, 'people-hands');
  await host.click('#lower-hands');
  await waitFor('hands lowered everywhere', async () => (await pressed(p, 'hand')) === 'false' && (await pressed(v, 'hand')) === 'false'
    && (await host.locator('#grid .tile.hand-raised').count()) === 0);

  // Mute all: P's microphone is muted by the host, and P cannot unmute until given the floor.
  await host.click('#mute-all');
  await waitFor('P muted by the host', async () => (await pressed(p, 'mic')) === 'true'
    && await p.evaluate(() => window.sfuClient.meeting.local.get('microphone').track.enabled === false));
  await p.locator('body').press('m');
  await waitFor('unmute refused', async () => (await pressed(p, 'mic')) === 'true');
  await host.locator(`#people-list li[data-participant="${pId}"] .host-allow`).click();
  await new Promise((r) => setTimeout(r, 500));
  await p.locator('body').press('m');
  await waitFor('P unmuted after the floor', async () => (await pressed(p, 'mic')) === 'false'
    && await p.evaluate(() => window.sfuClient.meeting.local.get('microphone').track.enabled === true));

  // V turns the camera off, and back on.
  await p.locator('body').press('v');
  await waitFor('camera off', async () => (await pressed(p, 'cam')) === 'true');
  await waitFor('the host sees initials', () => host.evaluate((k) => document.querySelector(`#grid .tile[data-key="${k}"]`).classList.contains('cam-off'), `p-${pId}`));
  await p.locator('body').press('v');
  await waitFor('camera on', async () => (await pressed(p, 'cam')) === 'false');

  // ? opens the shortcut list.
  await p.locator('body').press('?');
  await waitFor('help shown', () => p.locator('#help-dialog').isVisible());
  assert.ok((await p.locator('#help-dialog').innerText()).includes(STRINGS.vi.shortcutHand));
  await shot(p, 'help-shortcuts');
  await p.keyboard.press('Escape');

  // Another microphone during the call: same track id, the old one stopped.
  await p.click('#devices-btn');
  await waitFor('devices dialog', () => p.locator('#devices-dialog').isVisible());
  const options = await p.evaluate(() => [...document.getElementById('call-mic').options].map((o) => o.value));
  assert.ok(options.length >= 2, `fake microphones: ${options.length}`);
  const before = await p.evaluate(() => {
    const l = window.sfuClient.meeting.local.get('microphone');
    window.__oldMic = l.track;
    return { trackId: l.trackId, device: l.track.getSettings().deviceId };
  });
  const other = options.find((o) => o !== before.device);
  await p.selectOption('#call-mic', other);
  await waitFor('microphone switched', () => p.evaluate((other) => window.sfuClient.meeting.local.get('microphone').track.getSettings().deviceId === other, other));
  const after_ = await p.evaluate(() => ({
    trackId: window.sfuClient.meeting.local.get('microphone').trackId,
    old: window.__oldMic.readyState,
    live: window.sfuClient.meeting.local.get('microphone').track.readyState,
  }));
  assert.deepEqual(after_, { trackId: before.trackId, old: 'ended', live: 'live' });
  await shot(p, 'devices-dialog');
  await ctx.close();
});
