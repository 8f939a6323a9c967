// The participant grid: one tile per remote participant's camera (with their
// microphone), one per screen share, and the local preview. It watches how each
// remote tile is shown (size, in view, page visible) and calls `onView(key)`
// when that changes. Tiles of those speaking now are highlighted, and one tile
// (the main speaker's) can take the grid's first place. A participant's tile
// shows their connection quality as signal bars once the server has graded it.
import { t } from './i18n.js';

// Below this width a tile's name and controls no longer fit: scroll instead.
const MIN_TILE_PX = 240;

export class Grid {
  constructor(el, onFirstFrame) {
    this.el = el;
    this.tiles = new Map(); // key -> tile element
    this.onFirstFrame = onFirstFrame;
    this.onView = null;
    this.shown = new Map(); // remote tile key -> { height, intersecting } (null until observed)
    this.speaking = new Set(); // keys of the tiles whose participant speaks now
    this.featured = null;      // key of the tile in first place
    this.qualities = new Map(); // tile key -> excellent, good, poor or lost
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
    new ResizeObserver(() => this.fit()).observe(el);
  }

  // Columns that make the tiles as large as the grid allows (16:9 tiles, all
  // on screen). When even that leaves tiles under MIN_TILE_PX wide (many
  // sites on a phone), the stylesheet's flowing columns apply and the grid scrolls.
  fit() {
    const n = this.tiles.size;
    const gap = 8; // .5rem
    const w = this.el.clientWidth - 2 * gap;
    const h = this.el.clientHeight - 2 * gap;
    let best = { cols: 0, width: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const width = Math.min((w - gap * (cols - 1)) / cols, ((h - gap * (rows - 1)) / rows) * 16 / 9);
      if (width > best.width) best = { cols, width };
    }
    const fits = n > 0 && best.width >= MIN_TILE_PX;
    this.el.style.gridTemplateColumns = fits ? `repeat(${best.cols}, ${Math.floor(best.width)}px)` : '';
    this.el.style.setProperty('--tile-width', fits ? `${Math.floor(best.width)}px` : '');
    this.el.classList.toggle('fitted', fits);
  }

  // How a remote tile is shown, or null before the observers have reported:
  // visible means on screen, not hidden, on a page the user is looking at.
  view(key) {
    const s = this.shown.get(key);
    if (!s || s.height === null || s.intersecting === null) return null;
    return { height: s.height, visible: s.intersecting && s.height > 0 && document.visibilityState !== 'hidden' };
  }

  tile(key, label, { screen = false, local = false } = {}) {
    let tile = this.tiles.get(key);
    if (tile) return tile;
    tile = document.createElement('div');
    tile.className = 'tile' + (screen ? ' screen' : '') + (local ? ' local' : '');
    tile.dataset.key = key;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound plays through the <audio> element
    const audio = document.createElement('audio');
    audio.autoplay = true;
    const lab = document.createElement('div');
    lab.className = 'label';
    const speaking = document.createElement('span');
    speaking.className = 'badge speaking';
    speaking.title = t('speaking');
    speaking.setAttribute('role', 'img');
    speaking.setAttribute('aria-label', t('speaking'));
    const nameEl = document.createElement('span');
    nameEl.className = 'name';
    nameEl.textContent = label;
    const mic = document.createElement('span');
    mic.className = 'badge mic';
    mic.title = t('micMuted');
    mic.textContent = t('micOffBadge');
    const cam = document.createElement('span');
    cam.className = 'badge cam';
    cam.title = t('camOff');
    cam.textContent = t('camOffBadge');
    // Signal bars: three of them, as many lit as the grade is worth.
    const quality = document.createElement('span');
    quality.className = 'quality';
    quality.setAttribute('role', 'img');
    quality.tabIndex = 0; // the explanation, for the keyboard too
    for (let i = 0; i < 3; i++) quality.append(document.createElement('i'));
    lab.append(speaking, nameEl, quality, mic, cam);
    tile.append(video, audio, lab);
    this.showQuality(tile, this.qualities.get(key) ?? null);
    tile.classList.toggle('speaking', this.speaking.has(key));
    tile.classList.toggle('featured', this.featured === key);
    this.el.append(tile);
    this.tiles.set(key, tile);
    this.fit();
    if (!local) {
      this.shown.set(key, { height: null, intersecting: null });
      this.resizes.observe(tile);
      this.intersections.observe(tile);
    }
    if (!local && 'requestVideoFrameCallback' in video) {
      video.requestVideoFrameCallback(() => this.onFirstFrame?.(key));
    }
    return tile;
  }

  setTrack(key, track) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    const el = track.kind === 'video' ? tile.querySelector('video') : tile.querySelector('audio');
    el.srcObject = new MediaStream([track]);
    el.play?.().catch(() => {});
  }

  // Host controls on a remote participant's tile: mute their microphone, remove them.
  addHostControls(key, { onMute, onAllow, onRemove }) {
    const tile = this.tiles.get(key);
    if (!tile || tile.querySelector('.host-controls')) return;
    const box = document.createElement('div');
    box.className = 'host-controls';
    const mute = document.createElement('button');
    mute.className = 'host-mute';
    mute.textContent = t('hostMute');
    mute.addEventListener('click', onMute);
    const allow = document.createElement('button');
    allow.className = 'host-allow';
    allow.textContent = t('hostAllow');
    allow.addEventListener('click', onAllow);
    const remove = document.createElement('button');
    remove.className = 'host-remove';
    remove.textContent = t('hostRemove');
    remove.addEventListener('click', onRemove);
    box.append(mute, allow, remove);
    tile.append(box);
  }

  setFlags(key, { micMuted, camOff }) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    if (micMuted !== undefined) tile.classList.toggle('mic-muted', micMuted);
    if (camOff !== undefined) tile.classList.toggle('cam-off', camOff);
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

  // The language changed: the tiles' tooltips and badges follow.
  relabel() {
    for (const tile of this.tiles.values()) {
      const set = (sel, title, text) => {
        const el = tile.querySelector(sel);
        if (!el) return;
        el.title = t(title);
        if (el.hasAttribute('aria-label')) el.setAttribute('aria-label', t(title));
        if (text) el.textContent = t(text);
      };
      set('.badge.speaking', 'speaking');
      set('.badge.mic', 'micMuted', 'micOffBadge');
      set('.badge.cam', 'camOff', 'camOffBadge');
      for (const [sel, key] of [['.host-mute', 'hostMute'], ['.host-allow', 'hostAllow'], ['.host-remove', 'hostRemove']]) {
        const el = tile.querySelector(sel);
        if (el) el.textContent = t(key);
      }
      this.showQuality(tile, this.qualities.get(tile.dataset.key) ?? null);
    }
  }

  // Put one tile (or none, for null) in the grid's first place.
  setFeatured(key) {
    this.featured = key;
    for (const [k, tile] of this.tiles) tile.classList.toggle('featured', k === key);
  }

  remove(key) {
    const tile = this.tiles.get(key);
    if (tile) {
      this.resizes.unobserve(tile);
      this.intersections.unobserve(tile);
      tile.remove();
    }
    this.tiles.delete(key);
    this.shown.delete(key);
    this.qualities.delete(key);
    this.fit();
  }

  clear() {
    for (const key of [...this.tiles.keys()]) this.remove(key);
  }

  /// Keys of the tiles on screen, for tests and the participant count.
  keys() {
    return [...this.tiles.keys()];
  }
}
