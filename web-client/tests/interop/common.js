import { waitFor } from '../harness.js';

// Pieces shared by the interop tests (docs/interop.md): RTP stats of a page's
// peer connection in Chromium or Firefox, and "still decoding" checks.

/// inbound-rtp and outbound-rtp stats of a page's meeting, plain objects.
/// Works on a playwright page (Chromium) and a puppeteer page (Firefox).
export async function rtpStats(page) {
  return page.evaluate(async () => {
    const pc = window.sfuClient?.meeting?.pc;
    if (!pc) return { inbound: [], outbound: [] };
    const inbound = [];
    const outbound = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp') {
        inbound.push({
          kind: s.kind, mid: s.mid ?? null, ssrc: s.ssrc, framesDecoded: s.framesDecoded ?? 0,
          packetsReceived: s.packetsReceived ?? 0, packetsLost: s.packetsLost ?? 0, nackCount: s.nackCount ?? 0,
          frameHeight: s.frameHeight ?? 0, totalAudioEnergy: s.totalAudioEnergy ?? null,
        });
      } else if (s.type === 'outbound-rtp') {
        outbound.push({ kind: s.kind, rid: s.rid ?? null, packetsSent: s.packetsSent ?? 0, framesEncoded: s.framesEncoded ?? 0, frameHeight: s.frameHeight ?? 0 });
      }
    });
    return { inbound, outbound };
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// The page's inbound video streams that decoded frames and are still decoding
/// (framesDecoded grew over 600 ms), or false when fewer than `count`.
export async function videosDecoding(page, count) {
  const first = (await rtpStats(page)).inbound.filter((s) => s.kind === 'video' && s.framesDecoded > 0);
  if (first.length < count) return false;
  await sleep(600);
  const second = (await rtpStats(page)).inbound;
  const growing = second.filter((b) => b.kind === 'video' && first.some((a) => a.ssrc === b.ssrc && b.framesDecoded > a.framesDecoded));
  return growing.length >= count ? growing : false;
}

/// Audio arriving and still arriving; with energy where the browser reports it
/// (Chromium does; a silent stream has none).
export async function audioArriving(page) {
  const first = (await rtpStats(page)).inbound.filter((s) => s.kind === 'audio' && s.packetsReceived > 0);
  if (first.length === 0) return false;
  await sleep(400);
  const second = (await rtpStats(page)).inbound.filter((s) => s.kind === 'audio');
  const growing = second.filter((b) => first.some((a) => a.ssrc === b.ssrc && b.packetsReceived > a.packetsReceived)
    && (b.totalAudioEnergy === null || b.totalAudioEnergy > 0));
  return growing.length > 0 ? growing : false;
}

/// Join-to-first-frame of a web client page: websocket open to the first
/// decoded remote frame (the page's own metrics), in ms, or null until then.
export async function pageJoinToFirstFrame(page) {
  return page.evaluate(() => {
    const m = window.sfuClient?.meeting?.metrics;
    return !m || m.firstRemoteFrameAt === null || m.wsOpenAt === null ? null : m.firstRemoteFrameAt - m.wsOpenAt;
  });
}

/// Simulcast seen from a Chromium page `a` that shows one remote video, track
/// `trackId`: it asks for the low layer, then the high one (update_subscription
/// through the web client). The picture it decodes is small (at most `lowMax`
/// rows), then at least twice as high once the server has switched to a higher
/// RID on its keyframe. Returns both heights.
export async function layerSwitch(a, trackId, lowMax) {
  const height = async () => {
    const v = (await rtpStats(a)).inbound.filter((s) => s.kind === 'video' && s.framesDecoded > 0);
    return v.length === 1 ? v[0].frameHeight : 0;
  };
  const want = (quality) => a.evaluate(([id, q]) =>
    window.sfuClient.meeting.setView(id, { paused: false, quality: q, pinned: true }), [trackId, quality]);
  await want('low');
  const low = await waitFor('the low layer', async () => {
    const h = await height();
    return h > 0 && h <= lowMax ? h : false;
  }, 20000);
  await want('high');
  const high = await waitFor('a higher layer', async () => {
    const h = await height();
    return h >= 2 * low ? h : false;
  }, 45000);
  return { low, high };
}
