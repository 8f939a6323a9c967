// A starved link (issue 10, item 5; docs/signaling-protocol.md, `downlink`):
// viewer W sits behind 120 kbit/s (tc tbf), below the server's
// `media.starved_below_kbps` (150). The server keeps W's audio and at most one
// video (the first claim's lowest layer), pauses the rest and says so; W's page
// shows "Weak connection: video paused" (Vietnamese by default). When the cap
// goes, the notice goes by itself and both cameras come back.
//
// Runs inside the suite's private network namespace; W's namespace is made and
// removed here (harness.js, farNamespace).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor, farNamespace, gotoSettled, startAcross } from './harness.js';
import { shot } from './ui_helpers.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const wLink = farNamespace('starve', '10.82.0', { rate: '120kbit', burst: '4kb', latency: '400ms', lossPercent: 0 });
const { server, near, far, close } = await startAcross(wLink);
after(close);

async function open(browser, link, label, viewport = { width: 1280, height: 720 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`page ${label} error:`, e));
  await gotoSettled(page, link);
  await waitFor(`${label} joined`, () => page.evaluate(() => window.sfuClient?.meeting?.participantId != null), 30000);
  return page;
}

// Frames decoded so far on each of a page's inbound video streams.
async function frames(page) {
  return page.evaluate(async () => {
    const out = [];
    (await window.sfuClient.meeting.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.push(s.framesDecoded ?? 0);
    });
    return out;
  });
}

// Streams whose decoded frames grew over `ms`.
async function moving(page, ms) {
  const a = await frames(page);
  await sleep(ms);
  const b = await frames(page);
  return b.filter((n, i) => n > (a[i] ?? 0)).length;
}

const notice = (page) => page.evaluate(() => {
  const el = document.getElementById('downlink');
  return el && !el.hidden && getComputedStyle(el).display !== 'none' ? el.textContent.trim() : null;
});

test('a viewer below the starvation threshold is told its video is paused, and gets it back when the link recovers', async () => {
  const room = 'giao-ban-yeu';
  const host = await open(near, server.invite(room, 'UBND tỉnh', 'host'), 'host', { width: 640, height: 360 });
  const site = await open(near, server.invite(room, 'Sở Y tế', 'participant'), 'site', { width: 640, height: 360 });
  const w = await open(far, server.invite(room, 'UBND huyện Bác Ái', 'viewer'), 'W');

  await waitFor('W is told its link is too weak for video', async () => (await notice(w)) !== null, 40000)
    .catch(async (e) => { console.log(`W frames ${JSON.stringify(await frames(w))}`); throw e; });
  const text = await notice(w);
  assert.match(text, /Đường truyền yếu/, `the notice, in Vietnamese: ${text}`);
  // Starved: at most the first claim's video still moves.
  await sleep(2000);
  const starvedMoving = await moving(w, 3000);
  console.log(`starved: notice "${text}"; ${starvedMoving} of 2 videos still decoding`);
  assert.ok(starvedMoving <= 1, `at most one video while starved: ${starvedMoving}`);
  await shot(w, 'starved-viewer');

  wLink.lift();
  const lifted = Date.now();
  await waitFor('the notice goes by itself', async () => (await notice(w)) === null, 40000);
  await waitFor('both cameras come back', async () => (await moving(w, 1000)) === 2, 30000);
  await shot(w, 'starved-viewer-recovered');
  console.log(`starved: recovered ${Date.now() - lifted} ms after the cap was lifted`);
  await host.close();
  await site.close();
});
