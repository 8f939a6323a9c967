// Offers while sites come and go: no offer is refused. Sites join in a burst,
// some leave while others join, screen shares start and stop; each site is a
// meeting of the client's meeting.js (several in one page, each with its own
// connection). The server refused some of these offers with `invalid_offer`
// when the client listed an m-line that changed while its SDP was being made.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor } from './harness.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

test('joins, leaves and screen shares in a burst get every offer answered', async () => {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  await page.goto(server.url);
  const links = Array.from({ length: 13 }, (_, i) => server.invite('giao-ban-dong', `Điểm cầu ${i + 1}`));
  await page.evaluate(async (links) => {
    const { Meeting } = await import('/meeting.js');
    const cam = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 180, frameRate: 10 }, audio: true });
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 180;
    const c2d = canvas.getContext('2d');
    setInterval(() => { c2d.fillStyle = `hsl(${Date.now() % 360},50%,50%)`; c2d.fillRect(0, 0, 320, 180); }, 100);
    window.__errors = [];
    window.__offers = {};
    window.__answers = {};
    window.__ms = [];
    const start = (i) => {
      const u = new URL(links[i]);
      const m = new Meeting({ room: u.searchParams.get('room'), name: `Điểm cầu ${i + 1}`, token: u.searchParams.get('token'), localStream: new MediaStream([cam.getAudioTracks()[0].clone(), cam.getVideoTracks()[0].clone()]) });
      m.addEventListener('server-error', (e) => window.__errors.push({ site: i, code: e.detail.code, message: e.detail.message }));
      const send = m.sig.send.bind(m.sig);
      m.sig.send = (msg) => {
        if (msg.type === 'offer') {
          window.__offers[i] = (window.__offers[i] ?? 0) + 1;
          const lines = (msg.sdp.match(/^m=/gm) || []).length;
          if (lines > (window.__largest?.lines ?? 0)) window.__largest = { lines, bytes: msg.sdp.length };
        }
        send(msg);
      };
      m.sig.addEventListener('message', (e) => { if (e.detail.type === 'answer') window.__answers[i] = (window.__answers[i] ?? 0) + 1; });
      window.__ms[i] = m;
    };
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 8; i++) { start(i); await sleep(100); }
    await sleep(2500);
    window.__ms[2].leave();
    window.__ms[5].leave();
    for (let i = 8; i < 11; i++) { start(i); await sleep(50); }
    window.__ms[0].startScreenShare(canvas.captureStream(10).getVideoTracks()[0]);
    window.__ms[3].leave();
    for (let i = 11; i < 13; i++) { start(i); await sleep(30); }
    await sleep(800);
    await window.__ms[0].stopScreenShare();
    window.__ms[1].startScreenShare(canvas.captureStream(10).getVideoTracks()[0]);
  }, links);

  const present = [0, 1, 4, 6, 7, 8, 9, 10, 11, 12];
  // Settled: every present site stable, not negotiating, and subscribed to
  // every track of the others (9 others × 2, and the one screen share).
  const state = () => page.evaluate((present) => present.map((i) => {
    const m = window.__ms[i];
    return { site: i, stable: m.pc.signalingState === 'stable' && !m.negotiating, subscribed: [...m.remote.values()].filter((r) => r.transceiver.mid).length, screen: m.local.has('screen') };
  }), present);
  await waitFor('every site settled with all subscriptions', async () => {
    const s = await state();
    return s.every((x) => x.stable && x.subscribed === (x.screen ? 18 : 19)) ? s : null;
  }, 45000).catch(async (e) => { console.log(JSON.stringify(await state())); throw e; });
  const result = await page.evaluate((present) => ({
    errors: window.__errors,
    largest: window.__largest,
    offers: present.map((i) => window.__offers[i]),
    answers: present.map((i) => window.__answers[i]),
  }), present);
  console.log(`NEGOTIATION_OFFERS ${JSON.stringify(result.offers)}`);
  assert.deepEqual(result.errors, [], 'no offer refused');
  // Those still there had every offer answered (one that left may not have).
  assert.deepEqual(result.answers, result.offers, 'every offer answered');
  // A receiving m-line offers only the server's codecs: a 40-site briefing's
  // offer (80 remote tracks, 2 of one's own) stays within the default
  // limits.max_sdp_bytes (262144).
  const perLine = result.largest.bytes / result.largest.lines;
  console.log(`SDP_BYTES_PER_MLINE ${perLine.toFixed(0)} (${JSON.stringify(result.largest)})`);
  assert.ok(perLine * 82 < 262144, `${perLine} bytes per m-line`);
});
