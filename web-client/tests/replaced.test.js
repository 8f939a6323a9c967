// The same invite opened twice (a reload, a second tab): the server replaces
// the older connection. The older page says so, turns its camera off, and does
// not reconnect (two tabs would otherwise take turns kicking each other out);
// everyone else sees that person once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor } from './harness.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

const NAME = 'Huyện Cầu Kè';

test('opening the same invite again replaces the older page for good', async () => {
  const ctx = await browser.newContext({ viewport: { width: 480, height: 360 } });
  const r = await ctx.newPage();
  await r.goto(server.invite('giao-ban-tinh', 'Sở Y tế', 'host'));
  await waitFor('R joined', () => r.evaluate(() => window.sfuClient?.meeting?.participantId != null));

  const x = server.invite('giao-ban-tinh', NAME);
  const p = await ctx.newPage();
  await p.goto(x);
  await waitFor('P joined and publishes', () => p.evaluate(() =>
    window.sfuClient?.meeting?.local.get('camera')?.trackId != null));
  await waitFor('R shows P', async () => (await r.locator('.tile:not(.local) .name', { hasText: NAME }).count()) === 1);

  const q = await ctx.newPage();
  await q.goto(x);
  await waitFor('Q joined', () => q.evaluate(() => window.sfuClient?.meeting?.participantId != null));

  await waitFor('P shows the replaced message', () => p.evaluate(() =>
    document.getElementById('ended-message').textContent.includes('Bạn đã vào cuộc họp này ở một cửa sổ hoặc thiết bị khác.')), 10000);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const pState = await p.evaluate(() => ({
    reconnects: window.sfuClient.session.reconnects,
    timer: window.sfuClient.session.timer,
    ws: window.sfuClient.meeting.sig.ws.readyState,
    tracks: window.sfuClient.session.localStream.getTracks().map((t) => t.readyState),
    status: document.getElementById('ended-message').textContent,
  }));
  assert.equal(pState.reconnects, 0, 'P does not reconnect');
  assert.equal(pState.timer, null, 'no reconnect scheduled');
  assert.equal(pState.ws, 3, 'P\'s websocket is closed');
  assert.deepEqual(pState.tracks, ['ended', 'ended'], 'P\'s camera and microphone are off');
  assert.ok(pState.status.includes('Bạn đã vào cuộc họp này ở một cửa sổ hoặc thiết bị khác.'), pState.status);

  // Q stays in, and R sees that person exactly once.
  assert.notEqual(await q.evaluate(() => window.sfuClient.meeting.participantId), null);
  assert.equal(await q.evaluate(() => window.sfuClient.meeting.fatal ?? false), false);
  await waitFor('R shows one tile for the name', async () =>
    (await r.locator('.tile:not(.local) .name', { hasText: NAME }).count()) === 1);
  const listed = await r.evaluate((name) => [...window.sfuClient.meeting.participants.values()]
    .filter((x) => x.name === name).length, NAME);
  assert.equal(listed, 1, 'R lists the name once');

  // P shows an end screen, not a frozen meeting, and may take the meeting back.
  assert.equal(await p.locator('#meeting').isVisible(), false);
  assert.equal(await p.locator('#ended').isVisible(), true);
  await p.click('#rejoin-here');
  await waitFor('P is back', () => p.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  await waitFor('Q now shows the replaced screen', async () => q.locator('#ended').isVisible(), 10000);
  await waitFor('R still shows one tile for the name', async () =>
    (await r.locator('.tile:not(.local) .name', { hasText: NAME }).count()) === 1);
  await ctx.close();
});
