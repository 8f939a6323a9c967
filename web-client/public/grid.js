// The tiles and their layout: one tile per participant (camera and microphone),
// one per remote screen share, and one's own preview. Every tile is placed by
// `layout()` in a box of its own (absolute positions computed here), so no two
// tiles ever overlap, whatever the window size:
// - gallery: pages of tiles that fit the window (at most 3×3, 4×4 on large
//   screens, 2×3 on phones), with page buttons;
// - stage: one large tile (a screen share, the pinned tile, or in speaker view
//   the main speaker) and a filmstrip of the others, paged the same way.
// Tiles on other pages are hidden; the observers then report them as not
// visible (`onView(key)`), and the page pauses their subscriptions.
import { t } from './i18n.js';
import { icon } from './icons.js';

const GAP = 8;

// Initials for a camera-off tile: first letters of the first and last words.
export function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  const first = [...words[0]][0] ?? '';
  const last = words.length > 1 ? [...words[words.length - 1]][0] ?? '' : '';
  return (first + last).toUpperCase();
}

// The largest tiles of width/height `aspect` for `n` tiles in a w×h box:
// { cols, rows, width, height }.
export function fitTiles(n, w, h, aspect = 16 / 9) {
  let best = { cols: 1, rows: 1, width: 0, height: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const width = Math.min((w - GAP * (cols - 1)) / cols, ((h - GAP * (rows - 1)) / rows) * aspect);
    if (width > best.width) best = { cols, rows, width, height: width / aspect };
  }
  return best;
}

// Tiles are 16:9, except in a tall, narrow window (a phone held upright),
// where square tiles (the picture cropped at the sides) use the height.
export function tileAspect(w, h) {
  return h > w * 1.3 && w < 600 ? 1 : 16 / 9;
}

// How many tiles one gallery page holds in a w×h box.
export function pageCapacity(w, h) {
  if (w >= 1600 && h >= 800) return 16;
  if (w >= 700) return 9;
  return 6;
}

export class Grid {
  constructor(el, onFirstFrame) {
    this.el = el;
    this.tiles = new Map(); // key -> tile element
    this.names = new Map(); // key -> { name, local, screen }
    this.onFirstFrame = onFirstFrame;
    this.onView = null;
    this.onLayout = null;       // after each layout: { mode, page, pages, stage }
    this.onPin = null;          // a tile's pin button was pressed
    this.shown = new Map(); // remote tile key -> { height, intersecting } (null until observed)
    this.speaking = new Set(); // keys of the tiles whose participant speaks now
    this.featured = null;      // key of the main speaker's tile
    this.pinned = null;        // key of the tile the user pinned
    this.mode = 'gallery';     // or 'speaker'
    this.page = 0;
    this.pages = 1;
    this.stage = null;         // key of the tile on the stage, if any
    this.qualities = new Map(); // tile key -> excellent, good, poor or lost
    this.order = [];           // keys in the order they came
    const seen = (entries, update) => {
      for (const e of entries) {
        const key = e.target.dataset.key;
        const s = this.shown.get(key);
        if (!s || this.tiles.get(key) !== e.target) continue;
        update(s, e);
        this.onView?.(key);
      }
    };
    this.resizes = new ResizeObserver((entries) => seen(entries, (s, e) => { s.height = e.contentRect.height; }));
    this.intersections = new IntersectionObserver((entries) => seen(entries, (s, e) => { s.intersecting = e.isIntersecting; }));
    document.addEventListener('visibilitychange', () => { for (const key of this.shown.keys()) this.onView?.(key); });
    new ResizeObserver(() => this.layout()).observe(el);
  }

  // How a remote tile is shown, or null before the observers have reported:
  // visible means on screen, not hidden, on a page the user is looking at.
  view(key) {
    const s = this.shown.get(key);
    if (!s || s.height === null || s.intersecting === null) return null;
    const tile = this.tiles.get(key);
    const onPage = tile && !tile.hidden;
    return { height: onPage ? s.height : 0, visible: !!onPage && s.intersecting && s.height > 0 && document.visibilityState !== 'hidden' };
  }

  tile(key, label, { screen = false, local = false } = {}) {
    let tile = this.tiles.get(key);
    if (tile) {
      tile.classList.remove('stale');
      if (label !== undefined && !screen) this.setName(key, label);
      return tile;
    }
    tile = document.createElement('div');
    tile.className = 'tile' + (screen ? ' screen' : '') + (local ? ' local' : '');
    tile.dataset.key = key;
    tile.setAttribute('role', 'group');
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound plays through the <audio> element
    const audio = document.createElement('audio');
    audio.autoplay = true;
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    avatar.setAttribute('aria-hidden', 'true');
    const lab = document.createElement('div');
    lab.className = 'label';
    const speaking = document.createElement('span');
    speaking.className = 'badge speaking';
    speaking.setAttribute('role', 'img');
    const nameEl = document.createElement('span');
    nameEl.className = 'name';
    const mic = document.createElement('span');
    mic.className = 'badge mic';
    const cam = document.createElement('span');
    cam.className = 'badge cam';
    const hand = document.createElement('span');
    hand.className = 'badge hand';
    hand.setAttribute('role', 'img');
    hand.append(icon('hand'));
    // Signal bars: three of them, as many lit as the grade is worth.
    const quality = document.createElement('span');
    quality.className = 'quality';
    quality.setAttribute('role', 'img');
    quality.tabIndex = 0; // the explanation, for the keyboard too
    for (let i = 0; i < 3; i++) quality.append(document.createElement('i'));
    lab.append(speaking, nameEl, hand, quality, mic, cam);
    const actions = document.createElement('div');
    actions.className = 'tile-actions';
    const pin = document.createElement('button');
    pin.type = 'button';
    pin.className = 'pin';
    pin.append(icon('pin'));
    pin.addEventListener('click', () => this.onPin?.(key));
    actions.append(pin);
    tile.append(video, audio, avatar, lab, actions);
    this.el.append(tile);
    this.tiles.set(key, tile);
    this.order.push(key);
    this.names.set(key, { name: label, local, screen });
    this.setName(key, label);
    this.showQuality(tile, this.qualities.get(key) ?? null);
    tile.classList.toggle('speaking', this.speaking.has(key));
    tile.classList.toggle('featured', this.featured === key);
    if (!local) {
      this.shown.set(key, { height: null, intersecting: null });
      this.resizes.observe(tile);
      this.intersections.observe(tile);
    }
    if (!local && 'requestVideoFrameCallback' in video) {
      video.requestVideoFrameCallback(() => this.onFirstFrame?.(key));
    }
    this.layout();
    return tile;
  }

  // A tile's shown name (a screen's label is made from its owner's name).
  setName(key, name) {
    const tile = this.tiles.get(key);
    const n = this.names.get(key);
    if (!tile || !n) return;
    n.name = name;
    this.relabelTile(tile);
  }

  setTrack(key, track) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    const el = track.kind === 'video' ? tile.querySelector('video') : tile.querySelector('audio');
    el.srcObject = new MediaStream([track]);
    el.play?.().catch(() => {});
    if (track.kind === 'video') {
      // Initials until the first picture; a frozen picture from before a
      // reconnect goes once the new one moves.
      const drop = () => { tile.classList.add('has-video'); tile.querySelector('canvas.freeze')?.remove(); };
      if ('requestVideoFrameCallback' in el) el.requestVideoFrameCallback(drop);
      else el.addEventListener('playing', drop, { once: true });
    }
  }

  // One's own preview: the camera track, or none (initials shown).
  setLocalVideo(track) {
    const tile = this.tiles.get('local');
    if (!tile) return;
    const v = tile.querySelector('video');
    v.srcObject = track ? new MediaStream([track]) : null;
    tile.classList.toggle('has-video', !!track);
  }

  // Host controls on a remote participant's tile: mute their microphone,
  // give the floor, remove them. Each button names the participant.
  addHostControls(key, { onMute, onAllow, onRemove }) {
    const tile = this.tiles.get(key);
    if (!tile || tile.querySelector('.host-controls')) return;
    const box = document.createElement('div');
    box.className = 'host-controls';
    const make = (cls, handler) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = cls;
      b.addEventListener('click', handler);
      return b;
    };
    box.append(make('host-mute', onMute), make('host-allow', onAllow), make('host-remove', onRemove));
    tile.querySelector('.tile-actions').append(box);
    this.relabelTile(tile);
  }

  setFlags(key, { micMuted, camOff, hand }) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    if (micMuted !== undefined) tile.classList.toggle('mic-muted', micMuted);
    if (camOff !== undefined) tile.classList.toggle('cam-off', camOff);
    if (hand !== undefined) tile.classList.toggle('hand-raised', hand);
  }

  // The tiles of those speaking now (a tile made later is marked when made).
  setSpeaking(keys) {
    this.speaking = new Set(keys);
    for (const [key, tile] of this.tiles) tile.classList.toggle('speaking', this.speaking.has(key));
  }

  // A tile's connection quality, or null for none known (nothing is shown).
  // Kept for a tile made later.
  setQuality(key, quality) {
    if (quality) this.qualities.set(key, quality);
    else this.qualities.delete(key);
    const tile = this.tiles.get(key);
    if (tile) this.showQuality(tile, quality);
  }

  showQuality(tile, quality) {
    const el = tile.querySelector('.quality');
    if (!el) return;
    if (!quality) {
      delete el.dataset.quality;
      el.removeAttribute('title');
      el.removeAttribute('aria-label');
      return;
    }
    el.dataset.quality = quality;
    const text = t(`quality_${quality}`);
    el.title = text;
    el.setAttribute('aria-label', text);
  }

  displayName(key) {
    const n = this.names.get(key);
    if (!n) return '';
    if (n.screen) return t('screenOf', { name: n.name });
    if (n.local) return `${n.name} (${t('you')})`;
    return n.name;
  }

  // Every text of one tile in the current language.
  relabelTile(tile) {
    const key = tile.dataset.key;
    const n = this.names.get(key);
    if (!n) return;
    const shown = this.displayName(key);
    tile.querySelector('.name').textContent = shown;
    tile.setAttribute('aria-label', shown);
    tile.querySelector('.avatar').textContent = initials(n.name);
    const set = (sel, title, text) => {
      const el = tile.querySelector(sel);
      if (!el) return;
      el.title = title;
      el.setAttribute('aria-label', title);
      if (text !== undefined) el.textContent = text;
    };
    set('.badge.speaking', t('speaking'));
    set('.badge.mic', t('micMuted'), t('micOffBadge'));
    set('.badge.cam', t('camOff'), t('camOffBadge'));
    set('.badge.hand', t('handRaised'));
    const pinned = this.pinned === key;
    set('.pin', t(pinned ? 'unpinOf' : 'pinOf', { name: shown }));
    tile.querySelector('.pin').setAttribute('aria-pressed', String(pinned));
    set('.host-mute', t('hostMuteOf', { name: n.name }), t('hostMute'));
    set('.host-allow', t('hostAllowOf', { name: n.name }), t('hostAllow'));
    set('.host-remove', t('hostRemoveOf', { name: n.name }), t('hostRemove'));
    this.showQuality(tile, this.qualities.get(key) ?? null);
  }

  // The language changed: every tile's texts follow.
  relabel() {
    for (const tile of this.tiles.values()) this.relabelTile(tile);
  }

  // The main speaker's tile (or none, for null): first in the gallery, and
  // the stage of speaker view.
  setFeatured(key) {
    this.featured = key;
    for (const [k, tile] of this.tiles) tile.classList.toggle('featured', k === key);
    this.layout();
  }

  setPinned(key) {
    this.pinned = key && this.tiles.has(key) ? key : null;
    for (const [k, tile] of this.tiles) tile.classList.toggle('pinned', k === this.pinned);
    this.relabel();
    this.layout();
  }

  setMode(mode) {
    this.mode = mode === 'speaker' ? 'speaker' : 'gallery';
    this.page = 0;
    this.layout();
  }

  setPage(page) {
    this.page = Math.max(0, Math.min(this.pages - 1, page));
    this.layout();
  }

  // The tile on the stage: the pinned one, else the newest remote screen
  // share, else in speaker view the main speaker (or the first other tile).
  stageKey() {
    if (this.pinned && this.tiles.has(this.pinned)) return this.pinned;
    const screens = this.order.filter((k) => this.names.get(k)?.screen);
    if (screens.length) return screens[screens.length - 1];
    if (this.mode !== 'speaker') return null;
    if (this.featured && this.tiles.has(this.featured)) return this.featured;
    return this.order.find((k) => !this.names.get(k)?.local) ?? this.order[0] ?? null;
  }

  // Gallery order: the main speaker first, then one's own tile, then the
  // others as they came.
  sorted(keys) {
    const rank = (k) => (k === this.featured ? 0 : this.names.get(k)?.local ? 1 : 2);
    return [...keys].sort((a, b) => rank(a) - rank(b) || this.order.indexOf(a) - this.order.indexOf(b));
  }

  place(key, x, y, w, h) {
    const tile = this.tiles.get(key);
    tile.hidden = false;
    tile.style.left = `${Math.round(x)}px`;
    tile.style.top = `${Math.round(y)}px`;
    tile.style.width = `${Math.floor(w)}px`;
    tile.style.height = `${Math.floor(h)}px`;
    tile.classList.toggle('small', w < 320);
  }

  // Boxes for every tile; hidden tiles get none.
  layout() {
    const W = this.el.clientWidth - 2 * GAP;
    const H = this.el.clientHeight - 2 * GAP;
    const keys = this.order.filter((k) => this.tiles.has(k));
    const stage = keys.length > 1 || this.pinned ? this.stageKey() : null;
    this.stage = stage;
    for (const [k, tile] of this.tiles) tile.classList.toggle('on-stage', k === stage);
    let paged;
    let placeAll;
    if (W <= 0 || H <= 0 || keys.length === 0) {
      this.pages = 1;
      this.page = 0;
      this.onLayout?.(this.state());
      return;
    }
    if (stage) {
      const rest = this.sorted(keys.filter((k) => k !== stage));
      // The filmstrip: a column on the right of a wide window, a row under
      // the stage of a tall one.
      const side = W > H * 1.3;
      let thumbW;
      let thumbH;
      let perPage;
      if (side) {
        thumbW = Math.max(120, Math.min(220, W * 0.16));
        thumbH = thumbW * 9 / 16;
        perPage = Math.max(1, Math.floor((H + GAP) / (thumbH + GAP)));
      } else {
        // Square thumbnails under the stage of an upright phone: three or
        // more to a row.
        const aspect = tileAspect(W, H);
        thumbH = Math.max(68, Math.min(aspect === 1 ? 110 : 150, H * 0.16));
        thumbW = thumbH * aspect;
        perPage = Math.max(1, Math.floor((W + GAP) / (thumbW + GAP)));
      }
      if (rest.length === 0) { thumbW = 0; thumbH = 0; }
      paged = rest;
      placeAll = (onPage) => {
        if (side) {
          const sw = rest.length ? W - thumbW - GAP : W;
          this.place(stage, GAP, GAP, sw, H);
          onPage.forEach((k, i) => this.place(k, GAP + sw + GAP, GAP + i * (thumbH + GAP), thumbW, thumbH));
        } else {
          const sh = rest.length ? H - thumbH - GAP : H;
          this.place(stage, GAP, GAP, W, sh);
          onPage.forEach((k, i) => this.place(k, GAP + i * (thumbW + GAP), GAP + sh + GAP, thumbW, thumbH));
        }
      };
      this.perPage = perPage;
    } else {
      const all = this.sorted(keys);
      this.perPage = pageCapacity(W, H);
      paged = all;
      placeAll = (onPage) => {
        const f = fitTiles(onPage.length, W, H, tileAspect(W, H));
        const cols = f.cols;
        const rows = Math.ceil(onPage.length / cols);
        const top = GAP + (H - (rows * f.height + (rows - 1) * GAP)) / 2;
        onPage.forEach((k, i) => {
          const row = Math.floor(i / cols);
          const inRow = Math.min(cols, onPage.length - row * cols);
          const left = GAP + (W - (inRow * f.width + (inRow - 1) * GAP)) / 2;
          this.place(k, left + (i % cols) * (f.width + GAP), top + row * (f.height + GAP), f.width, f.height);
        });
      };
    }
    this.pages = Math.max(1, Math.ceil(paged.length / this.perPage));
    this.page = Math.min(this.page, this.pages - 1);
    const onPage = paged.slice(this.page * this.perPage, (this.page + 1) * this.perPage);
    const shown = new Set(onPage);
    if (stage) shown.add(stage);
    for (const [k, tile] of this.tiles) {
      if (!shown.has(k)) tile.hidden = true;
    }
    placeAll(onPage);
    this.onLayout?.(this.state());
  }

  state() {
    return { mode: this.mode, page: this.page, pages: this.pages, stage: this.stage, pinned: this.pinned };
  }

  // Tiles kept from a connection that ended, shown frozen until the rejoin
  // lists who is still there.
  // The last picture of each stays, drawn on a canvas over the video (the
  // video itself goes black when its connection closes).
  markStale() {
    for (const [k, tile] of this.tiles) {
      if (k === 'local') continue;
      tile.classList.add('stale');
      const v = tile.querySelector('video');
      if (!v.videoWidth || tile.querySelector('canvas.freeze')) continue;
      const c = document.createElement('canvas');
      c.className = 'freeze';
      c.width = v.videoWidth;
      c.height = v.videoHeight;
      try {
        c.getContext('2d').drawImage(v, 0, 0);
        v.after(c);
      } catch { /* no frame to keep */ }
    }
  }

  staleKeys() {
    return [...this.tiles].filter(([, tile]) => tile.classList.contains('stale')).map(([k]) => k);
  }

  remove(key) {
    const tile = this.tiles.get(key);
    if (tile) {
      this.resizes.unobserve(tile);
      this.intersections.unobserve(tile);
      tile.remove();
    }
    this.tiles.delete(key);
    this.names.delete(key);
    this.shown.delete(key);
    this.qualities.delete(key);
    this.order = this.order.filter((k) => k !== key);
    if (this.pinned === key) this.pinned = null;
    if (this.featured === key) this.featured = null;
    this.layout();
  }

  clear() {
    for (const key of [...this.tiles.keys()]) this.remove(key);
  }

  /// Keys of the tiles, for tests and the participant count.
  keys() {
    return [...this.tiles.keys()];
  }
}
