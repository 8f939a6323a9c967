// What the user-facing tests share: screenshots for review, every media track
// a page ever had, boxes of the tiles, and the string table.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
export const SHOTS = join(ROOT, 'target/screenshots');
mkdirSync(SHOTS, { recursive: true });

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

// Init script: keeps every track getUserMedia and getDisplayMedia hand out,
// and counts the calls. `denyVideo` refuses the camera only, as a browser
// whose camera permission is blocked does.
export function trackProbe({ denyVideo = false } = {}) {
  window.__tracks = [];
  window.__gum = [];
  const md = navigator.mediaDevices;
  const gum = md.getUserMedia.bind(md);
  md.getUserMedia = async (constraints) => {
    window.__gum.push({ audio: !!constraints?.audio, video: !!constraints?.video });
    if (denyVideo && constraints?.video) throw new DOMException('Permission denied', 'NotAllowedError');
    const s = await gum(constraints);
    window.__tracks.push(...s.getTracks());
    return s;
  };
  const gdm = md.getDisplayMedia?.bind(md);
  if (gdm) {
    md.getDisplayMedia = async (c) => {
      const s = await gdm(c);
      window.__tracks.push(...s.getTracks());
      return s;
    };
  }
}

// A page of `ctx` with trackProbe(`probe`) installed, opened at `link`.
export async function openProbed(ctx, link, label, probe = {}) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`page ${label} error:`, e));
  await page.addInitScript(trackProbe, probe);
  await page.goto(link);
  return page;
}

// Every track the page captured or received that is not ended yet.
export function liveTracks(page) {
  return page.evaluate(() => {
    const all = new Set(window.__tracks ?? []);
    for (const el of document.querySelectorAll('video, audio')) {
      for (const tr of el.srcObject?.getTracks?.() ?? []) all.add(tr);
    }
    for (const tr of window.sfuClient?.session?.localStream?.getTracks() ?? []) all.add(tr);
    for (const l of window.sfuClient?.meeting?.local?.values() ?? []) all.add(l.track);
    const pc = window.sfuClient?.meeting?.pc;
    try {
      for (const tx of pc?.getTransceivers?.() ?? []) {
        if (tx.sender.track) all.add(tx.sender.track);
        if (tx.receiver.track) all.add(tx.receiver.track);
      }
    } catch { /* a closed connection lists none */ }
    return { total: all.size, live: [...all].filter((tr) => tr.readyState !== 'ended').map((tr) => `${tr.kind}:${tr.label}`) };
  });
}

// The boxes of the tiles shown (not hidden), with their names.
export function tileBoxes(page) {
  return page.evaluate(() => [...document.querySelectorAll('#grid .tile')]
    .filter((el) => !el.hidden && el.offsetParent !== null)
    .map((el) => {
      const r = el.getBoundingClientRect();
      const name = el.querySelector('.name');
      const nr = name.getBoundingClientRect();
      return {
        key: el.dataset.key,
        x: r.left, y: r.top, w: r.width, h: r.height,
        name: name.textContent,
        // The name is drawn whole (not cut off) inside its tile.
        nameVisible: nr.width > 0 && name.scrollWidth <= name.clientWidth + 1 && nr.left >= r.left - 1 && nr.right <= r.right + 1 && nr.bottom <= r.bottom + 1 && nr.top >= r.top - 1,
      };
    }));
}

export function overlaps(boxes) {
  const out = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i];
      const b = boxes[j];
      const ix = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
      const iy = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
      if (ix > 0.5 && iy > 0.5) out.push([a.key, b.key]);
    }
  }
  return out;
}

// Everything a user can read or hear on the page: text, labels, tooltips, the title.
export function userText(page) {
  return page.evaluate(() => {
    const parts = [document.title, document.body.innerText];
    for (const el of document.querySelectorAll('[aria-label], [title], [placeholder]')) {
      if (el.closest('[hidden]')) continue;
      for (const a of ['aria-label', 'title', 'placeholder']) if (el.getAttribute(a)) parts.push(el.getAttribute(a));
    }
    return parts.join('\n');
  });
}
