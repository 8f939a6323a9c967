// Shared pieces of the browser tests: start the real `sfu` binary on free
// ports, and launch Debian's Chromium with fake camera/microphone.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
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
  // Unless `prejoin` is set, the link skips the pre-join screen (`&prejoin=0`,
  // as a kiosk's link would) and joins with camera and microphone at once.
  const invite = (room, name, role = 'participant', { prejoin = false, title = null, ttl = '1h' } = {}) => {
    const args = ['token', '--config', config, '--room', room, '--identity', `id-${name}`,
      '--name', name, '--role', role, '--ttl', ttl, '--base', url];
    if (title) args.push('--title', title);
    const out = execFileSync(BIN, args, { encoding: 'utf8' });
    const link = out.match(/invite link: (\S+)/)[1];
    return prejoin ? link : `${link}&prejoin=0`;
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

// One page's own network namespace behind a veth, for a shaped link of its own:
// the veth's near end stays in this process's namespace (the suite's private
// one, which plays the server's side) with `<subnet>.1`, the far end gets
// `<subnet>.2`. Names carry `name` and this process's id (the kernel's
// namespace and link names are global), so tests with different `name`s and
// subnets cannot collide. Shaping applies to what goes out of the near end:
// the far page's downlink, from the start when `shaping` is given (as for
// `shape`). `chromium` is a wrapper that starts Chromium in the
// namespace (for launchBrowser's executablePath). Call `remove()` at the end,
// whatever happened.
export function farNamespace(name, subnet, shaping = null) {
  const sh = (script) => execFileSync('sh', ['-ec', script], { encoding: 'utf8' });
  const tag = String(process.pid % 100000);
  const ns = `sfu${name}${tag}`;
  const near = `v${name}s${tag}`;
  const far = `v${name}c${tag}`;
  const table = `${name}${tag}`;
  const serverIp = `${subnet}.1`;
  const lift = () => sh(`tc qdisc del dev ${near} root 2>/dev/null || true
      nft delete table inet ${table} 2>/dev/null || true`);
  const remove = () => {
    lift();
    sh(`ip link del ${near} 2>/dev/null || true
        ip netns del ${ns} 2>/dev/null || true`);
  };
  try {
    // No IPv6 on the new links: its address coming up a moment later reads to
    // Chromium as a network change, which aborts page loads (ERR_NETWORK_CHANGED).
    sh(`ip netns add ${ns}
        sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip netns exec ${ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip link add ${near} type veth peer name ${far}
        ip link set ${far} netns ${ns}
        ip addr add ${serverIp}/24 dev ${near}
        ip link set ${near} up
        ip -n ${ns} addr add ${subnet}.2/24 dev ${far}
        ip -n ${ns} link set ${far} up
        ip -n ${ns} link set lo up`);
  } catch (e) {
    remove();
    throw e;
  }
  // The far page's downlink: a tbf rate cap and random UDP loss (nftables numgen).
  const shape = ({ rate, burst, latency = '400ms', lossPercent }) => {
    sh(`tc qdisc replace dev ${near} root tbf rate ${rate} burst ${burst} latency ${latency}
        nft add table inet ${table}
        nft add chain inet ${table} out '{ type filter hook output priority 0; }'
        nft add rule inet ${table} out oifname "${near}" meta l4proto udp numgen random mod 100 '<' ${lossPercent} drop`);
  };
  let dir;
  try {
    if (shaping) shape(shaping);
    dir = mkdtempSync(join(tmpdir(), `sfu-${name}-`));
  } catch (e) {
    remove();
    throw e;
  }
  const chromium = join(dir, 'chromium');
  writeFileSync(chromium, `#!/bin/sh\nexec ip netns exec ${ns} ${process.env.CHROMIUM || '/usr/bin/chromium'} "$@"\n`);
  chmodSync(chromium, 0o755);
  return {
    serverIp,
    ns,
    near,
    chromium,
    shape,
    lift,
    remove() {
      remove();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// page.goto, again after a moment when Chromium is still settling links a
// test just made (ERR_NETWORK_CHANGED).
export async function gotoSettled(page, url) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.goto(url);
    } catch (e) {
      if (attempt >= 3 || !String(e).includes('ERR_NETWORK_CHANGED')) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

// The server on a far namespace's near address, one browser here and one in
// the namespace (see farNamespace). `close()` ends all of it, the namespace too.
export async function startAcross(farNs) {
  let server;
  let near;
  let far;
  try {
    server = await startServer('', {
      listen: `${farNs.serverIp}:0`,
      media: `udp_bind = "${farNs.serverIp}"\nadvertised_ip = "${farNs.serverIp}"`,
    });
    near = await launchBrowser();
    far = await launchBrowser({ executablePath: farNs.chromium });
  } catch (e) {
    server?.stop();
    await near?.close();
    farNs.remove();
    throw e;
  }
  const close = async () => {
    await near.close().catch(() => {});
    await far.close().catch(() => {});
    server.stop();
    farNs.remove();
  };
  return { server, near, far, close };
}
