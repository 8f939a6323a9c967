// A subscription the server moves to a fresh SSRC (what it does when a
// subscriber's receiver reports stall twice) keeps playing: the server sends
// `renegotiate`, the client offers, and the answer declares the new SSRC,
// which Chromium accepts. The stall is simulated with the server's test-only
// `a=x-sfu-fault:renew-ssrc` offer marker, so this needs a server built with
// the `fault-injection` feature: `SFU_FAULT_BIN` (scripts/test.sh builds one).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';

const bin = process.env.SFU_FAULT_BIN;

test('a subscription moved to a fresh SSRC keeps playing after the renegotiation', { skip: !bin && 'SFU_FAULT_BIN is not set' }, async () => {
  const server = await startServer('', { bin });
  const browser = await launchBrowser();
  after(async () => { await browser.close(); server.stop(); });
  // Wide enough for the remote tile to be in view: an off-screen tile is paused.
  const ctx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const a = await ctx.newPage();
  const b = await ctx.newPage();
  const errors = [];
  a.on('pageerror', (e) => errors.push(String(e)));
  await a.goto(server.invite('hoi-chan-ssrc', 'Bác sĩ A', 'host'));
  await waitFor('A joined', () => a.evaluate(() => window.sfuClient?.meeting?.participantId));
  await b.goto(server.invite('hoi-chan-ssrc', 'Bác sĩ B'));
  const videoOf = async () => (await inbound(a)).filter((s) => s.kind === 'video' && s.framesDecoded > 0);
  const before = await waitFor('A decodes B', async () => { const v = await videoOf(); return v.length ? v : false; });

  // A's next offer carries the marker; the server renews A's video SSRCs and asks for another offer.
  await a.evaluate(() => {
    const m = window.sfuClient.meeting;
    m.__errors = [];
    m.addEventListener('server-error', (e) => m.__errors.push(e.detail.code + ': ' + e.detail.message));
    const send = m.sig.send.bind(m.sig);
    let marked = false;
    m.sig.send = (msg) => {
      if (msg.type === 'offer' && !marked) { marked = true; msg.sdp += 'a=x-sfu-fault:renew-ssrc\r\n'; }
      send(msg);
    };
    m.negotiate();
  });
  const oldSsrcs = new Set(before.map((s) => s.ssrc));
  const after2 = await waitFor('A decodes B on a fresh SSRC', async () => {
    const v = (await videoOf()).filter((s) => !oldSsrcs.has(s.ssrc));
    if (!v.length) return false;
    await new Promise((r) => setTimeout(r, 600));
    const again = (await videoOf()).filter((s) => v.some((x) => x.ssrc === s.ssrc && s.framesDecoded > x.framesDecoded));
    return again.length ? again : false;
  }, 15000);
  assert.ok(after2.length > 0);
  const state = await a.evaluate(() => ({ errors: window.sfuClient.meeting.__errors, signaling: window.sfuClient.meeting.pc.signalingState }));
  assert.deepEqual(state.errors, [], 'no refused offer or answer');
  assert.equal(state.signaling, 'stable');
  assert.deepEqual(errors, []);
  await ctx.close();
});
