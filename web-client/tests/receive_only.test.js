// Pages with nothing to send arrive first in an empty room: a viewer, and a
// participant whose camera and microphone are blocked. Neither may send an
// offer without m-lines; both must start receiving once the host joins and
// publishes. The viewer never opens the camera or microphone at all.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';

const server = await startServer();
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

// Counts getUserMedia calls; `block` makes them fail as a denied permission does.
function gumProbe({ block }) {
  window.__gumCalls = 0;
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints) => {
    window.__gumCalls += 1;
    if (block) return Promise.reject(new DOMException('blocked by the test', 'NotAllowedError'));
    return real(constraints);
  };
}

// Offers the page sent, by the number of m-lines in each.
function offerProbe() {
  window.__offerMlines = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const msg = JSON.parse(data);
      if (msg.type === 'offer') window.__offerMlines.push((msg.sdp.match(/^m=/gm) || []).length);
    } catch { /* not JSON */ }
    return send.call(this, data);
  };
}

async function decodingVideo(page) {
  const first = (await inbound(page)).filter((s) => s.kind === 'video' && s.framesDecoded > 0);
  if (first.length === 0) return false;
  await new Promise((r) => setTimeout(r, 600));
  const second = await inbound(page);
  return first.some((a) => second.some((b) => b.ssrc === a.ssrc && b.framesDecoded > a.framesDecoded));
}

test('a viewer and a participant without media arrive first and still receive the host', async () => {
  // Wide enough for the remote tile to be in view: an off-screen tile is paused.
  const ctx = await browser.newContext({ viewport: { width: 640, height: 360 } });
  const viewer = await ctx.newPage();
  const blocked = await ctx.newPage();
  await viewer.addInitScript(gumProbe, { block: false });
  await viewer.addInitScript(offerProbe);
  await blocked.addInitScript(gumProbe, { block: true });
  await blocked.addInitScript(offerProbe);
  for (const [n, p] of [['viewer', viewer], ['blocked', blocked]]) p.on('pageerror', (e) => console.error(`page ${n} error:`, e));

  await viewer.goto(server.invite('tiep-nhan', 'Sinh viên', 'viewer'));
  await waitFor('viewer joined', () => viewer.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  await blocked.goto(server.invite('tiep-nhan', 'Trạm y tế xã'));
  await waitFor('blocked page joined', () => blocked.evaluate(() => window.sfuClient?.meeting?.participantId != null));
  // Alone with nothing to send: no offer at all yet.
  await new Promise((r) => setTimeout(r, 1000));
  for (const p of [viewer, blocked]) {
    assert.deepEqual(await p.evaluate(() => window.__offerMlines), [], 'no offer before anything is published');
  }

  const host = await ctx.newPage();
  host.on('pageerror', (e) => console.error('page host error:', e));
  await host.goto(server.invite('tiep-nhan', 'Bác sĩ chủ trì', 'host'));

  await waitFor('viewer decodes the host', () => decodingVideo(viewer), 25000);
  await waitFor('blocked page decodes the host', () => decodingVideo(blocked), 25000);

  const v = await viewer.evaluate(() => ({
    gumCalls: window.__gumCalls,
    localStream: window.sfuClient.session.localStream,
    role: window.sfuClient.meeting.role,
    publishing: window.sfuClient.meeting.local.size,
    offers: window.__offerMlines,
    controlsHidden: ['mic', 'cam', 'share'].map((id) => document.getElementById(id).hidden),
  }));
  assert.equal(v.gumCalls, 0, 'the viewer never asked for the camera or microphone');
  assert.equal(v.localStream, null);
  assert.equal(v.role, 'viewer');
  assert.equal(v.publishing, 0);
  assert.ok(v.offers.length > 0 && v.offers.every((n) => n > 0), `every offer has m-lines: ${v.offers}`);
  assert.deepEqual(v.controlsHidden, [true, true, true]);

  const b = await blocked.evaluate(() => ({
    gumCalls: window.__gumCalls,
    localStream: window.sfuClient.session.localStream,
    role: window.sfuClient.meeting.role,
    publishing: window.sfuClient.meeting.local.size,
    offers: window.__offerMlines,
  }));
  assert.equal(b.gumCalls, 2, 'a participant asks for the microphone and the camera, each on its own');
  assert.equal(b.localStream, null);
  assert.equal(b.role, 'participant');
  assert.equal(b.publishing, 0);
  assert.ok(b.offers.length > 0 && b.offers.every((n) => n > 0), `every offer has m-lines: ${b.offers}`);

  // The host sees both, publishing nothing.
  const seen = await waitFor('host lists both', () => host.evaluate(() => {
    const ps = [...window.sfuClient.meeting.participants.values()];
    return ps.length === 2 ? ps.map((p) => [p.name, p.tracks.size]).sort() : null;
  }));
  assert.deepEqual(seen, [['Sinh viên', 0], ['Trạm y tế xã', 0]]);
  await ctx.close();
});
