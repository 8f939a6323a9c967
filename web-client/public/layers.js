// Simulcast layers and subscription updates: docs/signaling-protocol.md,
// "Layers and subscription updates".
export const QUALITIES = ['low', 'mid', 'high'];

// What a new subscription starts with on the server; only differences are sent.
const SERVER_DEFAULT = Object.freeze({ paused: false, quality: 'high', pinned: false });

// The highest layer worth receiving for a tile this many CSS pixels high.
export function qualityForHeight(height) {
  if (height < 240) return 'low';
  if (height < 480) return 'mid';
  return 'high';
}

// `joined.simulcast.layers` as `sendEncodings` for the camera, lowest layer
// first, or null to publish one layer (an old server, an empty or unusable list).
export function sendEncodings(layers) {
  if (!Array.isArray(layers) || layers.length < 2) return null;
  const rids = new Set();
  for (const l of layers) {
    if (typeof l?.rid !== 'string' || !/^[A-Za-z0-9]{1,16}$/.test(l.rid) || rids.has(l.rid)) return null;
    rids.add(l.rid);
  }
  const scale = (l) => Math.max(1, Number(l.scale_down) || 1);
  return [...layers].sort((a, b) => scale(b) - scale(a)).map((l) => {
    const e = { rid: l.rid, scaleResolutionDownBy: scale(l) };
    if (Number(l.max_kbps) > 0) e.maxBitrate = Number(l.max_kbps) * 1000;
    return e;
  });
}

// `publish_layers`: encode only the layers in `active` (by quality; the rid
// names it through `layers`). Encodings without a known rid are left alone.
export async function setActiveLayers(sender, layers, active) {
  const params = sender.getParameters();
  const qualityOf = new Map(layers.map((l) => [l.rid, l.quality]));
  let changed = false;
  for (const e of params.encodings ?? []) {
    const quality = qualityOf.get(e.rid);
    if (quality === undefined) continue;
    const on = active.includes(quality);
    if (e.active !== on) { e.active = on; changed = true; }
  }
  if (changed) await sender.setParameters(params);
}

// The `update_subscription` messages of one connection. The page says how it
// shows each video track (`want`); a track's update goes out once the answer
// that subscribes it has arrived, and only when it differs from what the
// server has. Updates wait `delayMs` so that a resize sends the end state, and
// go out at most `perFlush` per round: 20 a second, under the server's 50.
export class SubscriptionUpdates {
  constructor(send, { delayMs = 250, perFlush = 5 } = {}) {
    this.send = send;
    this.delayMs = delayMs;
    this.perFlush = perFlush;
    this.enabled = false; // the server speaks this part of the protocol
    this.tracks = new Map(); // trackId -> { subscribed, sent, wanted }
    this.timer = null;
  }

  entry(trackId) {
    let s = this.tracks.get(trackId);
    if (!s) { s = { subscribed: false, sent: SERVER_DEFAULT, wanted: null }; this.tracks.set(trackId, s); }
    return s;
  }

  want(trackId, view) {
    this.entry(trackId).wanted = { paused: !!view.paused, quality: view.quality, pinned: !!view.pinned };
    this.schedule();
  }

  // The answer to an offer listing these subscriptions was applied.
  subscribed(trackIds) {
    for (const id of trackIds) this.entry(id).subscribed = true;
    this.schedule();
  }

  forget(trackId) {
    this.tracks.delete(trackId);
  }

  due() {
    const out = [];
    for (const [trackId, s] of this.tracks) {
      const w = s.wanted;
      if (!s.subscribed || !w) continue;
      if (w.paused !== s.sent.paused || w.quality !== s.sent.quality || w.pinned !== s.sent.pinned) out.push([trackId, s]);
    }
    // Tiles coming into view first: pausing can wait a round, a blank tile should not.
    return out.sort(([, a], [, b]) => Number(a.wanted.paused) - Number(b.wanted.paused));
  }

  schedule() {
    if (!this.enabled || this.timer !== null) return;
    this.timer = setTimeout(() => this.flush(), this.delayMs);
  }

  flush() {
    this.timer = null;
    const due = this.due();
    for (const [trackId, s] of due.slice(0, this.perFlush)) {
      s.sent = s.wanted;
      this.send({ type: 'update_subscription', track_id: trackId, ...s.wanted });
    }
    if (due.length > this.perFlush) this.schedule();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.enabled = false;
  }
}
