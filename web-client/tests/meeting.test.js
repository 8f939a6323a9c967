// Two Chromium pages open invite links to one room, see and hear each other,
// one shares its screen, then one leaves. Everything goes through the real
// server: websocket signaling, ICE-lite, DTLS-SRTP, the shard's forwarding.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

async function videosDecoding(page, count) {
  const first = (await inbound(page)).filter((s) => s.kind === 'video' && s.framesDecoded > 0);
  if (first.length < count) return false;
  await new Promise((r) => setTimeout(r, 600));
  const second = await inbound(page);
  // Every stream counted must still be decoding.
  const growing = first.filter((a) => second.some((b) => b.ssrc === a.ssrc && b.framesDecoded > a.framesDecoded));
  return growing.length >= count ? second : false;
}

async function hearing(page) {
  const audio = (await inbound(page)).filter((s) => s.kind === 'audio');
  return audio.some((s) => s.packetsReceived > 0 && s.totalAudioEnergy > 0) ? audio : false;
}

test('two invite links meet, share a screen, and one leaves', async (t) => {
  assert.ok(server.url.startsWith('https://'), `served over HTTPS: ${server.url}`);
  const ctx = await browser.newContext();
  const a = await ctx.newPage();
  const b = await ctx.newPage();
  a.on('pageerror', (e) => console.error('page A error:', e));
  b.on('pageerror', (e) => console.error('page B error:', e));
  await a.goto(server.invite('giao-ban', 'Sở Y tế', 'host'));
  await waitFor('A joined', () => a.evaluate(() => window.sfuClient?.meeting?.participantId));
  await b.goto(server.invite('giao-ban', 'Huyện Bình Minh'));

  await t.test('each decodes the other\'s video and hears its audio', async () => {
    await waitFor('A decodes B', () => videosDecoding(a, 1));
    await waitFor('B decodes A', () => videosDecoding(b, 1));
    await waitFor('A hears B', () => hearing(a));
    await waitFor('B hears A', () => hearing(b));
    // An invite link skips the form entirely.
    assert.equal(await b.locator('#join-form').isVisible(), false);
    assert.equal(await b.locator('#controls').isVisible(), true);
    const labelOnB = await b.locator('.tile:not(.local) .name').first().textContent();
    assert.equal(labelOnB, 'Sở Y tế');
    const labelOnA = await a.locator('.tile:not(.local) .name').first().textContent();
    assert.equal(labelOnA, 'Huyện Bình Minh');
    const joinMs = await waitFor('B first frame time', () =>
      b.evaluate(() => {
        const m = window.sfuClient.meeting.metrics;
        return m.firstRemoteFrameAt === null ? null : m.firstRemoteFrameAt - m.wsOpenAt;
      }));
    console.log(`JOIN_TO_FIRST_FRAME_MS ${joinMs.toFixed(0)}`);
  });

  await t.test('mute shows an indicator on the other side', async () => {
    await a.click('#mic');
    await waitFor('B sees A muted', () => b.locator('.tile.mic-muted').count());
    await a.click('#mic');
    await waitFor('B sees A unmuted', async () => (await b.locator('.tile.mic-muted').count()) === 0);
  });

  await t.test('a screen share arrives as a second video', async () => {
    await a.click('#share');
    await waitFor('B decodes two videos', () => videosDecoding(b, 2), 25000);
    await waitFor('B shows a screen tile', () => b.locator('.tile.screen').count());
  });

  await t.test('when A leaves, B\'s grid drops A', async () => {
    const before = await b.locator('.tile:not(.local)').count();
    assert.ok(before >= 2, `B shows A's camera and screen (${before} tiles)`);
    await a.click('#leave');
    await waitFor('B grid updated', async () => (await b.locator('.tile:not(.local)').count()) === 0);
  });
  await ctx.close();
});

test('a link without a token is refused with the documented code, and a viewer only receives', async () => {
  const ctx = await browser.newContext();
  const c = await ctx.newPage();
  await c.goto(`${server.url}?room=giao-ban&name=${encodeURIComponent('Không mời')}`);
  await waitFor('refusal shown', () => c.evaluate(() =>
    document.getElementById('ended-message').textContent.includes('Cần đường dẫn mời có mã truy cập')));
  // It does not keep retrying a refusal.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await c.evaluate(() => window.sfuClient.session.reconnects), 0);

  const host = await ctx.newPage();
  await host.goto(server.invite('hoi-chan', 'Bác sĩ chủ trì', 'host'));
  await waitFor('host joined', () => host.evaluate(() => window.sfuClient?.meeting?.participantId));
  const viewer = await ctx.newPage();
  await viewer.goto(server.invite('hoi-chan', 'Sinh viên', 'viewer'));
  await waitFor('viewer decodes the host', async () => {
    const s = (await inbound(viewer)).filter((x) => x.kind === 'video' && x.framesDecoded > 0);
    return s.length > 0;
  });
  const viewerState = await viewer.evaluate(() => ({
    role: window.sfuClient.meeting.role,
    publishing: window.sfuClient.meeting.local.size,
  }));
  assert.deepEqual(viewerState, { role: 'viewer', publishing: 0 });
  // The host sees no tracks from the viewer.
  const fromViewer = await host.evaluate(() => [...window.sfuClient.meeting.participants.values()]
    .filter((p) => p.name === 'Sinh viên').map((p) => p.tracks.size));
  assert.deepEqual(fromViewer, [0]);

  // The host mutes a participant's microphone, then removes the viewer.
  const p = await ctx.newPage();
  await p.goto(server.invite('hoi-chan', 'Bác sĩ tuyến huyện'));
  const pid = await waitFor('participant joined', () => p.evaluate(() => window.sfuClient?.meeting?.participantId));
  await waitFor('participant publishes', () => p.evaluate(() => window.sfuClient.meeting.local.get('microphone')?.trackId));
  await host.click(`.tile[data-key="p-${pid}"] .host-mute`);
  await waitFor('participant muted by the host', () => p.evaluate(() =>
    window.sfuClient.meeting.local.get('microphone').muted === true
    && window.sfuClient.meeting.local.get('microphone').track.enabled === false));
  // The participant cannot unmute itself until the host gives the floor.
  await p.click('#mic');
  await waitFor('unmute refused, muted again', () => p.evaluate(() =>
    window.sfuClient.meeting.local.get('microphone').track.enabled === false
    && window.sfuClient.meeting.local.get('microphone').muted === true));
  await host.click(`.tile[data-key="p-${pid}"] .host-allow`);
  await new Promise((r) => setTimeout(r, 300));
  await p.click('#mic');
  await waitFor('unmuted after the floor was given', () => p.evaluate(() =>
    window.sfuClient.meeting.local.get('microphone').track.enabled === true));
  const vid = await viewer.evaluate(() => window.sfuClient.meeting.participantId);
  await host.click(`.tile[data-key="p-${vid}"] .host-remove`);
  // Removing asks first.
  await waitFor('confirmation asked', () => host.locator('#confirm-dialog').isVisible());
  await host.click('#confirm-yes');
  await waitFor('viewer told it was removed', () => viewer.evaluate(() =>
    document.getElementById('ended-message').textContent.includes('Chủ trì đã mời bạn ra khỏi phòng')));
  await waitFor('host sees the viewer gone', async () =>
    (await host.locator(`.tile[data-key="p-${vid}"]`).count()) === 0);
  // A participant has no host controls, and the server would refuse them anyway.
  assert.equal(await p.locator('.host-controls').count(), 0);
  await ctx.close();
});
