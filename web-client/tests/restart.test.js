// The server restarts under two pages in a meeting: SIGTERM makes it tell the
// pages, which show "server restarting" and reconnect on their own when it is
// back on the same address; video flows again without anyone reloading.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';

const SHUTDOWN = '[shutdown]\ndrain_secs = 3\nretry_after_ms = 500\n';
let server = await startServer(SHUTDOWN);
const browser = await launchBrowser();
after(async () => { await browser.close(); server.stop(); });

async function decoding(page) {
  const first = (await inbound(page)).filter((s) => s.kind === 'video' && s.framesDecoded > 0);
  if (first.length < 1) return false;
  await new Promise((r) => setTimeout(r, 600));
  const second = await inbound(page);
  return first.some((a) => second.some((b) => b.ssrc === a.ssrc && b.framesDecoded > a.framesDecoded));
}

test('pages rejoin by themselves after a server restart', async () => {
  const ctx = await browser.newContext();
  const a = await ctx.newPage();
  const b = await ctx.newPage();
  await a.goto(server.invite('hoi-chan', 'A', 'host'));
  await b.goto(server.invite('hoi-chan', 'B'));
  await waitFor('A decodes B', () => decoding(a));
  await waitFor('B decodes A', () => decoding(b));
  const firstPc = await a.evaluate(() => window.sfuClient.meeting.pc.connectionState);
  assert.equal(firstPc, 'connected');

  server.proc.kill('SIGTERM');
  const exit = await server.exited;
  assert.equal(exit.code, 0, 'the server exits 0 after draining');
  // Both pages were told and show it.
  for (const page of [a, b]) {
    await waitFor('restart banner', () => page.evaluate(() => {
      const s = document.getElementById('status');
      return s.classList.contains('warning') && s.textContent.includes('khởi động lại');
    }));
  }

  const port = new URL(server.url).port;
  server = await startServer(SHUTDOWN, { listen: `127.0.0.1:${port}`, keyFile: server.keyFile });
  for (const page of [a, b]) {
    await waitFor('rejoined', () => page.evaluate(() =>
      window.sfuClient.session.reconnects >= 1 && window.sfuClient.meeting.participantId !== null), 30000);
  }
  await waitFor('A decodes B again', () => decoding(a), 30000);
  await waitFor('B decodes A again', () => decoding(b), 30000);
  const banner = await a.evaluate(() => document.getElementById('status').classList.contains('warning'));
  assert.equal(banner, false, 'the banner is gone once reconnected');
});
