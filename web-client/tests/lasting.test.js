// Lasting states, as the user sees them: leaving, being removed, a refused
// or expired invite each end on a full end screen with every capture off; a
// dropped connection keeps the tiles under an overlay; the token leaves the
// address bar; the language switch leaves no Vietnamese behind.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor } from './harness.js';
import { shot, trackProbe, openProbed, liveTracks, userText } from './ui_helpers.js';
import { STRINGS } from '../public/i18n.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

const open = (ctx, link, label) => openProbed(ctx, link, label);

const joined = (page) => waitFor('joined', () => page.evaluate(() => window.sfuClient?.meeting?.participantId != null));
const publishing = (page) => waitFor('publishing', () => page.evaluate(() =>
  window.sfuClient?.meeting?.local.get('camera')?.trackId != null && window.sfuClient.meeting.local.get('microphone')?.trackId != null));
const endScreen = (page) => page.evaluate(() => ({
  shown: !document.getElementById('ended').hidden && document.getElementById('meeting').hidden,
  heading: document.getElementById('ended-heading').textContent,
  message: document.getElementById('ended-message').textContent,
  rejoin: !document.getElementById('rejoin').hidden,
}));

test('leave and removal end on an end screen with every track ended', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const host = await open(ctx, server.invite('giao-ban-ket-thuc', 'Sở Y tế', 'host'), 'host');
  await joined(host);
  const a = await open(ctx, server.invite('giao-ban-ket-thuc', 'Huyện Châu Thành'), 'A');
  const b = await open(ctx, server.invite('giao-ban-ket-thuc', 'Huyện Càng Long'), 'B');
  await publishing(a);
  await publishing(b);
  await waitFor('host shows both', async () => (await host.locator('#grid .tile:not(.local)').count()) === 2);

  // The address bar keeps no token.
  for (const p of [host, a, b]) {
    const url = await p.evaluate(() => location.href);
    assert.ok(!url.includes('token='), `the token left the address bar: ${url}`);
    assert.ok(url.includes('room=giao-ban-ket-thuc'), url);
  }

  // A leaves.
  assert.ok((await liveTracks(a)).live.length >= 2, 'A captures before leaving');
  await a.click('#leave');
  await waitFor('A shows the end screen', async () => (await endScreen(a)).shown);
  const aEnd = await endScreen(a);
  assert.equal(aEnd.heading, STRINGS.vi.endHeading_left);
  assert.equal(aEnd.message, STRINGS.vi.left);
  assert.equal(aEnd.rejoin, true, '"join again" after leaving');
  await waitFor('every track on A ended', async () => (await liveTracks(a)).live.length === 0, 5000)
    .catch(async (e) => { console.log('A live', await liveTracks(a)); throw e; });
  assert.ok((await liveTracks(a)).total >= 2);
  await shot(a, 'end-left');
  // "Join again" works from the end screen, with the camera on again.
  await a.click('#rejoin');
  await publishing(a);
  await waitFor('A back in the host\'s grid', async () => (await host.locator('#grid .tile:not(.local)').count()) === 2);
  await a.click('#leave');
  await waitFor('A left again', async () => (await endScreen(a)).shown && (await liveTracks(a)).live.length === 0, 5000);

  // The host removes B from the people panel, after confirming.
  const bId = await b.evaluate(() => window.sfuClient.meeting.participantId);
  await host.click('#people-btn');
  const row = host.locator(`#people-list li[data-participant="${bId}"]`);
  await waitFor('B listed', () => row.isVisible());
  await row.locator('.host-remove').click();
  await waitFor('confirmation', () => host.locator('#confirm-dialog').isVisible());
  await shot(host, 'confirm-remove');
  assert.ok((await host.locator('#confirm-text').textContent()).includes('Huyện Càng Long'));
  await host.click('#confirm-yes');
  await waitFor('B shows the removal', async () => (await endScreen(b)).shown);
  const bEnd = await endScreen(b);
  assert.equal(bEnd.message, STRINGS.vi.error_removed);
  assert.equal(bEnd.rejoin, false, 'no "join again" after a removal');
  await waitFor('every track on B ended', async () => (await liveTracks(b)).live.length === 0, 5000)
    .catch(async (e) => { console.log('B live', await liveTracks(b)); throw e; });
  await shot(b, 'end-removed');
  // The message stays.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await endScreen(b)).shown, true);
  await waitFor('host sees B gone', async () => (await host.locator('#grid .tile:not(.local)').count()) === 0);
  await ctx.close();
});

test('the host ends the meeting: everyone gets the end screen, every track ended', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const host = await open(ctx, server.invite('hoi-chan-ket-thuc', 'Bác sĩ chủ trì', 'host'), 'host');
  await joined(host);
  const a = await open(ctx, server.invite('hoi-chan-ket-thuc', 'Bệnh viện huyện'), 'A');
  await publishing(a);
  await host.click('#people-btn');
  await host.click('#end-all');
  await waitFor('asked first', () => host.locator('#confirm-dialog').isVisible());
  assert.equal(await host.locator('#confirm-text').textContent(), STRINGS.vi.confirmEnd);
  await host.click('#confirm-yes');
  for (const [label, p] of [['A', a], ['host', host]]) {
    await waitFor(`${label} shows the end`, async () => (await endScreen(p)).shown);
    const end = await endScreen(p);
    assert.equal(end.message, STRINGS.vi.error_meeting_ended, label);
    assert.equal(end.rejoin, false, `${label}: no "join again"`);
    await waitFor(`every track on ${label} ended`, async () => (await liveTracks(p)).live.length === 0, 5000);
  }
  // It stays ended: no reconnect.
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(await a.evaluate(() => window.sfuClient.session.reconnects), 0);
  await shot(a, 'end-meeting-ended');
  await ctx.close();
});

test('refused and expired invites end on an end screen, without capture left on', async () => {
  const ctx = await browser.newContext();
  const link = server.invite('hoi-chan-tu-choi', 'Bác sĩ Lan');
  // One character of the signature changed: refused as not valid.
  const u = new URL(link);
  const token = u.searchParams.get('token');
  u.searchParams.set('token', token.slice(0, -2) + (token.endsWith('A') ? 'BB' : 'AA'));
  const refused = await open(ctx, u.toString(), 'refused');
  await waitFor('refusal shown', async () => (await endScreen(refused)).shown);
  assert.equal((await endScreen(refused)).message, STRINGS.vi.error_invalid_token);
  await waitFor('nothing captured is live', async () => (await liveTracks(refused)).live.length === 0, 5000);
  await shot(refused, 'end-refused');

  const expiring = server.invite('hoi-chan-tu-choi', 'Bác sĩ Minh', 'participant', { ttl: '1s' });
  // The server allows 5 s of clock skew.
  await new Promise((r) => setTimeout(r, 7000));
  const expired = await open(ctx, expiring, 'expired');
  await waitFor('expiry shown', async () => (await endScreen(expired)).shown);
  assert.equal((await endScreen(expired)).message, STRINGS.vi.error_token_expired);
  await waitFor('nothing captured is live', async () => (await liveTracks(expired)).live.length === 0, 5000);
  await shot(expired, 'end-expired');
  await ctx.close();
});

test('a dropped connection keeps the tiles under an overlay, and the rejoin keeps them', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1024, height: 640 } });
  const a = await open(ctx, server.invite('giao-ban-mat-mang', 'Sở Y tế', 'host'), 'A');
  const aId = await joined(a).then(() => a.evaluate(() => window.sfuClient.meeting.participantId));
  const b = await open(ctx, server.invite('giao-ban-mat-mang', 'Trạm y tế xã'), 'B');
  await joined(b);
  const tile = b.locator(`#grid .tile[data-key="p-${aId}"]`);
  await waitFor('B shows A', () => tile.isVisible());
  await waitFor('B shows A\'s picture', () => b.evaluate((key) => document.querySelector(`#grid .tile[data-key="${key}"] video`)?.videoWidth > 0, `p-${aId}`), 20000);
  await b.evaluate((key) => { document.querySelector(`#grid .tile[data-key="${key}"]`).dataset.mark = 'before'; }, `p-${aId}`);
  // The network drops B's websocket (the server then drops B).
  await b.evaluate(() => window.sfuClient.meeting.sig.ws.close());
  await waitFor('overlay shown', () => b.locator('#reconnecting').isVisible(), 5000);
  assert.equal(await tile.isVisible(), true, 'A\'s tile stays while reconnecting');
  // Frozen on its last picture, not black.
  const frozen = await b.evaluate((key) => {
    const c = document.querySelector(`#grid .tile[data-key="${key}"] canvas.freeze`);
    if (!c) return null;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4 * 97) if (d[i] + d[i + 1] + d[i + 2] > 60) lit += 1;
    return lit;
  }, `p-${aId}`);
  assert.ok(frozen > 0, `the last picture stays: ${frozen}`);
  assert.ok((await b.locator('#reconnecting-text').textContent()).length > 0);
  await shot(b, 'reconnecting');
  await waitFor('B rejoined', () => b.evaluate(() => window.sfuClient.session.reconnects >= 1 && window.sfuClient.meeting.participantId !== null), 15000);
  await waitFor('overlay gone', async () => !(await b.locator('#reconnecting').isVisible()), 10000);
  assert.equal(await tile.getAttribute('data-mark'), 'before', 'the same tile, not an emptied and refilled grid');
  assert.equal(await tile.isVisible(), true);
  await waitFor('A still in B\'s grid with a live picture', () => b.evaluate((key) => {
    const v = document.querySelector(`#grid .tile[data-key="${key}"] video`);
    return v && v.srcObject?.getVideoTracks()[0]?.readyState === 'live';
  }, `p-${aId}`), 15000);
  await ctx.close();
});

// Vietnamese strings of the table, as fragments between placeholders, that
// differ from English. The language button names the other language on purpose.
function vietnameseFragments() {
  const out = new Set();
  for (const [key, vi] of Object.entries(STRINGS.vi)) {
    if (['language', 'languageName'].includes(key) || vi === STRINGS.en[key]) continue;
    for (const part of vi.split(/\{\w+\}/)) {
      const f = part.trim().replace(/^[\s.,:;()–-]+|[\s.,:;()–-]+$/g, '');
      if (f.length >= 3 && !Object.values(STRINGS.en).some((en) => en.includes(f))) out.add(f);
    }
  }
  return [...out];
}

function leftovers(text, fragments) {
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return fragments.filter((f) => new RegExp(`(^|[^\\p{L}])${esc(f)}($|[^\\p{L}])`, 'u').test(text));
}

test('switching to English leaves no Vietnamese string of the table', async () => {
  const fragments = vietnameseFragments();
  assert.ok(fragments.length > 100, `fragments: ${fragments.length}`);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  // Names here contain no word of the table.
  const host = await open(ctx, server.invite('giao-ban-ngon-ngu', 'Anh Khoa', 'host', { title: 'Giao ban Q4' }), 'host');
  await joined(host);
  const other = await open(ctx, server.invite('giao-ban-ngon-ngu', 'Chi Hoa'), 'other');
  await joined(other);
  await waitFor('host shows the other', async () => (await host.locator('#grid .tile:not(.local)').count()) === 1);
  await host.click('#people-btn');
  await host.click('#mic');
  const before = await userText(host);
  assert.ok(leftovers(before, fragments).length > 5, 'the check sees Vietnamese before the switch');
  await host.click('#lang');
  await waitFor('English', () => host.evaluate(() => document.documentElement.lang === 'en'));
  const text = await userText(host);
  assert.deepEqual(leftovers(text, fragments), [], text);
  assert.ok(text.includes('People (2)') && text.includes('Unmute mic'), text);
  assert.ok((await host.title()).includes('Giao ban Q4'), 'the page title shows the meeting');
  await shot(host, 'meeting-english');

  // The other screens, in English from the start of a new page (the choice is kept).
  const pre = await ctx.newPage();
  await pre.addInitScript(trackProbe);
  await pre.goto(server.invite('giao-ban-ngon-ngu', 'Anh Long', 'participant', { prejoin: true }));
  await waitFor('pre-join', () => pre.locator('#prejoin').isVisible());
  await waitFor('preview', () => pre.evaluate(() => document.getElementById('preview').srcObject !== null));
  assert.deepEqual(leftovers(await userText(pre), fragments), []);
  await pre.goto(server.url);
  await waitFor('entry', () => pre.locator('#entry').isVisible());
  assert.deepEqual(leftovers(await userText(pre), fragments), []);
  await host.click('#leave');
  await waitFor('end screen', () => host.locator('#ended').isVisible());
  assert.deepEqual(leftovers(await userText(host), fragments), []);
  await ctx.close();
});
