// Shared pieces of the browser tests: start the real `sfu` binary on free
// ports, and launch Debian's Chromium with fake camera/microphone.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = resolve(import.meta.dirname, '../..');

const BIN = process.env.SFU_BIN || join(ROOT, 'target/debug/sfu');

// `listen` fixes the HTTP address and `keyFile` the token key (a restart test
// reuses both, so its invite links stay valid).
// `media` adds keys to the [media] table (an address other than loopback).
export async function startServer(extraToml = '', { listen = '127.0.0.1:0', keyFile = null, bin = BIN, media = '' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sfu-e2e-'));
  const config = join(dir, 'config.toml');
  const key = keyFile || join(dir, 'token.key');
  // HTTPS with the server's own self-signed certificate (data_dir), accepted
  // by Chromium's --ignore-certificate-errors below: the path users take.
  writeFileSync(config, `log_level = "info"\n[http]\nlisten = "${listen}"\ntls = "on"\ndata_dir = "${dir}"\n[metrics]\nlisten = "127.0.0.1:0"\n[media]\nudp_port = 0\n${media}\n[auth]\nkey_file = "${key}"\n${extraToml}`);
  const proc = spawn(bin, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  // The server logs to stdout (and fails to stderr): keep both for reports.
  proc.stderr.on('data', (d) => { log += d; });
  proc.stdout.on('data', (d) => { log += d; });
  const url = await new Promise((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}\n${log}`)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/Web client: (\S+)/);
      if (m) { clearTimeout(timer); resolveUrl(m[1]); }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${out}\n${log}`)));
  });
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  // An invite link with a fresh token, minted by `sfu token` with the server's key.
  const invite = (room, name, role = 'participant') => {
    const out = execFileSync(BIN, ['token', '--config', config, '--room', room, '--identity', `id-${name}`,
      '--name', name, '--role', role, '--ttl', '1h', '--base', url], { encoding: 'utf8' });
    return out.match(/invite link: (\S+)/)[1];
  };
  return { url, proc, exited, keyFile: key, invite, log: () => log, stop: () => proc.kill('SIGKILL') };
}

// `executablePath` can be a wrapper that starts Chromium elsewhere (in another
// network namespace); `extraArgs` go after the usual flags (another fake audio
// source, for one).
export async function launchBrowser({ executablePath = process.env.CHROMIUM || '/usr/bin/chromium', extraArgs = [] } = {}) {
  // playwright gives every launch a fresh, temporary profile directory.
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--auto-select-desktop-capture-source=Entire screen', '--auto-accept-this-tab-capture',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-quic', '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
      // The server's self-signed certificate (the test's stand-in for "accept it once").
      '--ignore-certificate-errors',
      ...extraArgs,
    ],
  });
}

/// Inbound RTP stats of a page's peer connection, by kind.
export async function inbound(page) {
  return page.evaluate(async () => {
    const pc = window.sfuClient?.meeting?.pc;
    if (!pc) return [];
    const out = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out.push({ kind: s.kind, mid: s.mid, ssrc: s.ssrc, framesDecoded: s.framesDecoded ?? 0, packetsReceived: s.packetsReceived ?? 0, bytesReceived: s.bytesReceived ?? 0, totalAudioEnergy: s.totalAudioEnergy ?? 0 });
      }
    });
    return out;
  });
}

export async function waitFor(what, fn, timeoutMs = 20000, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}
