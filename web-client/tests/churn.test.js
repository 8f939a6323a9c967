// Sequence continuity on a reused m-line. A stays in the room; B publishes for
// 40 s and leaves; C joins. A's client receives C's camera on the receive
// m-line B's camera used (same mid, and on the server's side the same outgoing
// stream), so the packets for C must continue where B's stopped: a restart at
// a random sequence number looks like replayed or very old SRTP packets to
// Chromium, which drops them and never shows C.
//
// Prints REUSED_MLINE_FIRST_FRAME_MS: from A receiving C's `track_published`
// to A's first decoded frame of C.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

const ROOM = 'giao-ban-luan-phien';
const B_PUBLISHES_MS = Number(process.env.CHURN_B_MS || 40000);
// The bound: a site that joins is seen within 2 s, not "eventually".
const FIRST_FRAME_BOUND_MS = 2000;

async function decodingFrom(page, mid) {
  const first = (await inbound(page)).filter((s) => s.kind === 'video' && s.mid === mid && s.framesDecoded > 0);
  if (first.length === 0) return false;
  await new Promise((r) => setTimeout(r, 600));
  const second = await inbound(page);
  return first.some((a) => second.some((b) => b.ssrc === a.ssrc && b.framesDecoded > a.framesDecoded));
}

// A's receive m-line for one participant's camera.
function cameraMid(page, participantId) {
  return page.evaluate((pid) => {
    const r = [...window.sfuClient.meeting.remote.values()].find((x) => x.participantId === pid && x.info.source === 'camera');
    return r?.transceiver.mid ?? null;
  }, participantId);
}

test('a camera on a reused receive m-line is decoded at once', async () => {
  // Wide enough for the remote tile to be in view: an off-screen tile is paused.
  const ctx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const a = await ctx.newPage();
  a.on('pageerror', (e) => console.error('page A error:', e));
  // The last server messages A received, for a failure's report.
  await a.addInitScript(() => {
    window.__rx = [];
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', (e) => {
          try {
            const m = JSON.parse(e.data);
            if (m.type !== 'ping') window.__rx.push(m.type === 'error' ? `error:${m.code}` : m.type);
            // The answer's media sections in short, for a failure's report.
            if (m.type === 'answer') {
              window.__lastAnswer = m.sdp.split(/\r?\n/).filter((l) => /^(m=|a=mid|a=ssrc:\d+ cname|a=(sendonly|recvonly|inactive|sendrecv)|a=ssrc-group)/.test(l)).join(' | ');
            }
          } catch { /* not JSON */ }
          if (window.__rx.length > 40) window.__rx.shift();
        });
      }
    };
  });
  const aState = () => a.evaluate(() => {
    const m = window.sfuClient.meeting;
    return { participants: [...m.participants.keys()], negotiating: m.negotiating, renegotiate: m.renegotiate,
      signalingState: m.pc.signalingState, connection: m.pc.connectionState, rx: window.__rx, errors: window.__errors, lastAnswer: window.__lastAnswer };
  });
  await a.goto(server.invite(ROOM, 'A', 'host'));
  await waitFor('A joined', () => a.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  await a.evaluate(() => {
    window.__errors = [];
    window.sfuClient.meeting.addEventListener('server-error', (e) => window.__errors.push(`${e.detail.code}: ${e.detail.message}`.slice(0, 300)));
  });

  const b = await ctx.newPage();
  b.on('pageerror', (e) => console.error('page B error:', e));
  const bJoined = Date.now();
  await b.goto(server.invite(ROOM, 'B'));
  const bId = await waitFor('B joined', () => b.evaluate(() => window.sfuClient?.meeting?.participantId));
  const bMid = await waitFor('A subscribed to B\'s camera', () => cameraMid(a, bId));
  await waitFor('A decodes B', () => decodingFrom(a, bMid), 25000);
  await new Promise((r) => setTimeout(r, Math.max(0, bJoined + B_PUBLISHES_MS - Date.now())));
  await b.click('#leave');
  await b.close();
  await waitFor('A saw B leave and renegotiated', () => a.evaluate((pid) => {
    const m = window.sfuClient.meeting;
    return !m.participants.has(pid) && !m.negotiating && m.pc.signalingState === 'stable';
  }, bId)).catch(async (e) => { console.log(`A: ${JSON.stringify(await aState())}`); throw e; });

  // Frames decoded so far on each inbound stream (B's included), and a probe
  // for C's camera announcement, taken as A's client handles it.
  await a.evaluate(async () => {
    const m = window.sfuClient.meeting;
    window.__base = {};
    (await m.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') window.__base[s.ssrc] = s.framesDecoded ?? 0;
    });
    window.__published = [];
    m.sig.addEventListener('message', (e) => {
      const msg = e.detail;
      if (msg.type === 'track_published' && msg.track.source === 'camera') {
        window.__published.push({ at: performance.now(), trackId: msg.track.track_id, mid: m.remote.get(msg.track.track_id)?.transceiver.mid ?? null });
      }
    });
  });

  const c = await ctx.newPage();
  c.on('pageerror', (e) => console.error('page C error:', e));
  await c.goto(server.invite(ROOM, 'C'));
  const published = await waitFor('A told of C\'s camera', () => a.evaluate(() => window.__published[0]), 20000);
  assert.equal(published.mid, bMid, `A receives C's camera on B's old m-line (mid ${published.mid}, B had ${bMid})`);

  // Poll in the page, so the time is not blurred by the test's round trips.
  const firstFrameMs = await a.evaluate(async ({ mid, since, limitMs }) => {
    const pc = window.sfuClient.meeting.pc;
    const end = performance.now() + limitMs;
    while (performance.now() < end) {
      let fresh = false;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.mid === mid && (s.framesDecoded ?? 0) > (window.__base[s.ssrc] ?? 0)) fresh = true;
      });
      if (fresh) return performance.now() - since;
      await new Promise((r) => setTimeout(r, 20));
    }
    return null;
  }, { mid: published.mid, since: published.at, limitMs: 15000 });
  console.log(`REUSED_MLINE_FIRST_FRAME_MS ${firstFrameMs === null ? 'never (15 s)' : firstFrameMs.toFixed(0)}`);
  if (firstFrameMs === null) {
    // What A got on that m-line: packets that never decode point at SRTP
    // replay drops (sequence numbers restarted) or at a missing keyframe.
    const seen = (await inbound(a)).filter((s) => s.mid === published.mid);
    console.log(`A's inbound on mid ${published.mid}: ${JSON.stringify(seen)}; frames before C: ${JSON.stringify(await a.evaluate(() => window.__base))}`);
  }
  assert.notEqual(firstFrameMs, null, 'A decodes C\'s camera on the reused m-line within 15 s');
  assert.ok(firstFrameMs <= FIRST_FRAME_BOUND_MS, `first frame of C after ${firstFrameMs.toFixed(0)} ms (bound ${FIRST_FRAME_BOUND_MS} ms)`);
  await waitFor('A keeps decoding C', () => decodingFrom(a, published.mid), 5000);
  await ctx.close();
});
