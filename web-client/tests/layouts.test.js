// Layouts with a full briefing, as the user sees them: 12 sites in gallery
// view on a 1366×768 screen (pages that fit, no two tiles overlapping, every
// name readable, the hidden page paused), speaker view, a 390×844 phone, and a
// screen share that becomes the stage on every page.
//
// The 11 other sites run in two more Chromium processes: two real pages with
// small windows, and nine bots in one page (see startBots). Microphones are
// silent (so no one becomes the main speaker and reorders the tiles); three
// sites have a small fake camera. Sites are found by name.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, inbound, waitFor } from './harness.js';
import { shot, tileBoxes, overlaps } from './ui_helpers.js';
import { STRINGS } from '../public/i18n.js';

const server = await startServer();
const observerBrowser = await launchBrowser();
const siteBrowsers = [await launchBrowser(), await launchBrowser()];
after(async () => {
  for (const b of [observerBrowser, ...siteBrowsers]) await b.close().catch(() => {});
  server.stop();
});

const ROOM = 'giao-ban-40-diem';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Init script of a site: a silent microphone, and a small camera or none.
function siteMedia({ camera }) {
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = async (c) => {
    if (c?.video) {
      if (!camera) throw new DOMException('no camera here', 'NotFoundError');
      return real({ video: { width: 320, height: 180, frameRate: 15 } });
    }
    const ctx = new AudioContext();
    const dst = ctx.createMediaStreamDestination();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    gain.gain.value = 0;
    osc.connect(gain).connect(dst);
    osc.start();
    return dst.stream;
  };
}

// Real pages besides the observer and the phone: the presenter (with a
// camera) and one more site. The others are bots: meetings of the page's own
// meeting.js, several in one page, each a participant of its own with its own
// connection, some with a camera; they pause everything they receive, as a
// page with nothing on screen does.
const PAGES = ['TTYT Càng Long', 'TTYT Châu Thành'];
const BOTS = ['TTYT Cầu Kè', 'TTYT Tiểu Cần', 'TTYT Trà Cú', 'TTYT Cầu Ngang', 'TTYT Duyên Hải', 'BV Đa khoa tỉnh', 'BV Sản Nhi', 'CDC tỉnh', 'BV Lao và Bệnh phổi'];
// Bots with a camera: the last two, which land on the observer's second page.
const BOT_CAMERAS = new Set(['CDC tỉnh', 'BV Lao và Bệnh phổi']);

// In a bot page: join each invite as a meeting of its own.
async function startBots(page, bots) {
  return page.evaluate(async (bots) => {
    const { Meeting } = await import('/meeting.js');
    const md = navigator.mediaDevices;
    const camera = (await md.getUserMedia({ video: { width: 320, height: 180, frameRate: 15 } })).getVideoTracks()[0];
    const ctx = new AudioContext();
    window.__bots = [];
    for (const { link, withCamera, name } of bots) {
      const u = new URL(link);
      const token = u.searchParams.get('token');
      const dst = ctx.createMediaStreamDestination();
      const tracks = [dst.stream.getAudioTracks()[0]];
      if (withCamera) tracks.push(camera.clone());
      const m = new Meeting({ room: u.searchParams.get('room'), name, token, localStream: new MediaStream(tracks) });
      m.addEventListener('remote-added', (e) => { if (e.detail.info.kind === 'video') m.setView(e.detail.info.track_id, { paused: true, quality: 'low', pinned: false }); });
      window.__bots.push(m);
      await new Promise((r) => { m.addEventListener('joined', r, { once: true }); setTimeout(r, 15000); });
    }
    return window.__bots.map((m) => m.participantId);
  }, bots);
}

// Participant ids on the observer's page, by name.
const idsByName = (page) => page.evaluate(() => Object.fromEntries([...window.sfuClient.meeting.participants].map(([id, p]) => [p.name, id])));

const joinedId = (page) => waitFor('joined', () => page.evaluate(() => window.sfuClient?.meeting?.participantId), 30000);

// The observer's camera subscriptions, by participant: { trackId, mid }.
const cameraMids = (page) => page.evaluate(() => {
  const out = {};
  for (const [trackId, r] of window.sfuClient.meeting.remote) {
    if (r.info.source === 'camera' && r.transceiver.mid) out[r.participantId] = { trackId, mid: r.transceiver.mid };
  }
  return out;
});

// Frames decoded per m-line over `ms`.
async function decodedOver(page, mids, ms = 2000) {
  const count = async () => Object.fromEntries((await inbound(page)).filter((s) => mids.includes(s.mid)).map((s) => [s.mid, s.framesDecoded]));
  const a = await count();
  await sleep(ms);
  const b = await count();
  return Object.fromEntries(mids.map((m) => [m, (b[m] ?? 0) - (a[m] ?? 0)]));
}

// The page has decoded frames of the screen share shown in tile `key`.
async function decodesScreen(page, key) {
  const mid = await page.evaluate((k) => {
    for (const [id, r] of window.sfuClient.meeting.remote) if (`screen-${id}` === k) return r.transceiver.mid;
    return null;
  }, key);
  return (await inbound(page)).some((s) => s.mid === mid && s.framesDecoded > 0);
}

const visibleKeys = (page) => page.evaluate(() => [...document.querySelectorAll('#grid .tile')].filter((el) => !el.hidden).map((el) => el.dataset.key));

async function checkLayout(page, label, { expectTiles = null } = {}) {
  const boxes = await tileBoxes(page);
  if (expectTiles !== null) assert.equal(boxes.length, expectTiles, `${label}: tiles shown`);
  assert.deepEqual(overlaps(boxes), [], `${label}: no two tiles overlap`);
  const hidden = boxes.filter((b) => !b.nameVisible).map((b) => b.name);
  assert.deepEqual(hidden, [], `${label}: every name is readable`);
  const view = await page.evaluate(() => ({ w: innerWidth, h: innerHeight }));
  for (const b of boxes) {
    assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.w <= view.w + 0.5 && b.y + b.h <= view.h + 0.5, `${label}: ${b.key} inside the window ${JSON.stringify(b)}`);
  }
  return boxes;
}

// Every control button inside the window, none overlapping another.
async function checkControls(page, label) {
  const boxes = await page.evaluate(() => [...document.querySelectorAll('#controls button, #pager button, header button')]
    .filter((el) => el.offsetParent !== null)
    .map((el) => { const r = el.getBoundingClientRect(); return { key: el.id || el.textContent, x: r.left, y: r.top, w: r.width, h: r.height }; }));
  const view = await page.evaluate(() => ({ w: innerWidth, h: innerHeight }));
  assert.ok(boxes.length >= 7, `${label}: controls shown (${boxes.length})`);
  for (const b of boxes) {
    assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.w <= view.w + 0.5 && b.y + b.h <= view.h + 0.5, `${label}: ${b.key} inside the window ${JSON.stringify(b)}`);
  }
  assert.deepEqual(overlaps(boxes), [], `${label}: no two controls overlap`);
  const tiles = await tileBoxes(page);
  const bar = await page.evaluate(() => document.getElementById('controls').getBoundingClientRect().top);
  for (const t of tiles) assert.ok(t.y + t.h <= bar + 0.5, `${label}: tile ${t.key} above the controls`);
}

test('12 sites: gallery pages, speaker view, a phone, and a screen share on every stage', async (t) => {
  const ctx = await observerBrowser.newContext({ viewport: { width: 1366, height: 768 } });
  const observer = await ctx.newPage();
  observer.on('pageerror', (e) => console.error('observer error:', e));
  await observer.addInitScript(siteMedia, { camera: true });
  await observer.addInitScript(() => {
    window.__sig = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...a) {
        super(...a);
        this.addEventListener('message', (e) => { try { const m = JSON.parse(e.data); if (!['ping', 'active_speakers', 'connection_quality'].includes(m.type)) window.__sig.push(['in', m.type, m.code ?? '', Date.now() % 100000]); } catch { /* */ } });
      }
      send(d) { try { const m = JSON.parse(d); if (m.type !== 'pong') window.__sig.push(['out', m.type, '', Date.now() % 100000]); } catch { /* */ } return super.send(d); }
    };
  });
  await observer.goto(server.invite(ROOM, 'Sở Y tế', 'host', { title: 'Giao ban trực tuyến ngành Y tế' }));
  await joinedId(observer);

  const sites = [];
  for (const [i, name] of PAGES.entries()) {
    const c = await siteBrowsers[0].newContext({ viewport: { width: 480, height: 360 } });
    const page = await c.newPage();
    page.on('pageerror', (e) => console.error(`${name} error:`, e));
    await page.addInitScript(siteMedia, { camera: i === 0 });
    await page.goto(server.invite(ROOM, name));
    const id = await joinedId(page);
    sites.push({ name, page, id, camera: i === 0 });
  }
  const botPage = await (await siteBrowsers[1].newContext({ viewport: { width: 320, height: 240 } })).newPage();
  botPage.on('pageerror', (e) => console.error('bots error:', e));
  await botPage.goto(server.url);
  const botIds = await startBots(botPage, BOTS.map((name) => ({ name, link: server.invite(ROOM, name), withCamera: BOT_CAMERAS.has(name) })));
  BOTS.forEach((name, i) => sites.push({ name, page: null, id: botIds[i], camera: BOT_CAMERAS.has(name) }));
  await waitFor('observer shows 12 tiles', async () => (await observer.locator('#grid .tile').count()) === 12, 30000);
  const camerasOf = async () => {
    const ids = await idsByName(observer);
    const m = await cameraMids(observer);
    for (const s of sites) s.id = ids[s.name] ?? s.id;
    return sites.filter((s) => s.camera).every((s) => m[s.id]) ? m : null;
  };
  let mids = await waitFor('observer subscribed to the 3 cameras', camerasOf, 30000).catch(async (e) => {
    console.log('observer remote', await observer.evaluate(() => [...window.sfuClient.meeting.remote].map(([id, r]) => [id, r.participantId, r.info.source, r.transceiver.mid])));
    console.log('observer state', await observer.evaluate(() => ({ sig: window.sfuClient.meeting.pc.signalingState, neg: window.sfuClient.meeting.negotiating })));
    console.log('sig', JSON.stringify(await observer.evaluate(() => window.__sig)));
    console.log(server.log().split('\n').filter((l) => !/DEBUG|TRACE/.test(l)).slice(-80).join('\n'));
    throw e;
  });

  await t.test('gallery on 1366×768: two pages, no overlap, every name, the other page paused', async () => {
    await waitFor('pager', () => observer.locator('#pager').isVisible());
    mids = await waitFor('cameras', camerasOf, 30000);
    assert.equal(await observer.locator('#page-label').textContent(), STRINGS.vi.pageOf.replace('{n}', '1').replace('{total}', '2'));
    const boxes = await checkLayout(observer, 'page 1', { expectTiles: 9 });
    assert.ok(boxes.every((b) => b.w >= 320), `tiles are large: ${boxes.map((b) => Math.round(b.w))}`);
    const shown = await visibleKeys(observer);
    console.log('page 1 shows', shown.join(' '), 'order', (await observer.evaluate(() => window.sfuClient.grid.order)).join(' '));
    const camerasShown = sites.filter((s) => s.camera && shown.includes(`p-${s.id}`));
    const camerasHidden = sites.filter((s) => s.camera && !shown.includes(`p-${s.id}`));
    assert.ok(camerasShown.length >= 1 && camerasHidden.length >= 1, `cameras on both pages: ${camerasShown.length}/${camerasHidden.length}`);
    const shownMids = camerasShown.map((s) => mids[s.id].mid);
    const hiddenMids = camerasHidden.map((s) => mids[s.id].mid);
    await waitFor('page 1 cameras decode, page 2 cameras are paused', async () => {
      const d = await decodedOver(observer, [...shownMids, ...hiddenMids]);
      return shownMids.every((m) => d[m] > 0) && hiddenMids.every((m) => d[m] === 0) ? d : null;
    }, 30000).catch(async (e) => {
      console.log('decoded', await decodedOver(observer, [...shownMids, ...hiddenMids]));
      console.log('sig', JSON.stringify(await observer.evaluate(() => window.__sig)));
      console.log('pc', await observer.evaluate(() => [window.sfuClient.meeting.pc.signalingState, window.sfuClient.meeting.pc.connectionState, window.sfuClient.meeting.pc.iceConnectionState]));
      throw e;
    });
    await shot(observer, 'gallery-1366-page1');

    await observer.click('#page-next');
    await waitFor('page 2', async () => (await observer.locator('#page-label').textContent()).startsWith('Trang 2'));
    await checkLayout(observer, 'page 2', { expectTiles: 3 });
    await waitFor('page 2 cameras decode, page 1 cameras are paused', async () => {
      const d = await decodedOver(observer, [...shownMids, ...hiddenMids]);
      return hiddenMids.every((m) => d[m] > 0) && shownMids.every((m) => d[m] === 0) ? d : null;
    }, 30000);
    await shot(observer, 'gallery-1366-page2');
    await observer.click('#page-prev');
  });

  await t.test('speaker view: one large tile and a filmstrip, no overlap', async () => {
    await observer.click('#layout');
    assert.equal(await observer.locator('#layout').getAttribute('aria-pressed'), 'true');
    const boxes = await checkLayout(observer, 'speaker view');
    const areas = boxes.map((b) => b.w * b.h).sort((a, b) => b - a);
    assert.ok(areas[0] > 4 * areas[1], 'one tile is much larger than the filmstrip');
    await shot(observer, 'speaker-1366');
    await observer.click('#layout');
  });

  let phone;
  await t.test('a 390×844 phone: controls inside the window, tiles not overlapping', async () => {
    const pctx = await observerBrowser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    phone = await pctx.newPage();
    phone.on('pageerror', (e) => console.error('phone error:', e));
    await phone.addInitScript(siteMedia, { camera: true });
    await phone.goto(server.invite(ROOM, 'Trạm y tế xã Hòa Ân'));
    await joinedId(phone);
    await waitFor('phone shows its first page', async () => (await tileBoxes(phone)).length >= 6, 20000);
    await checkLayout(phone, 'phone');
    await checkControls(phone, 'phone');
    await shot(phone, 'phone-390-gallery');
    await phone.click('#people-btn');
    await waitFor('people panel', () => phone.locator('#people').isVisible());
    await shot(phone, 'phone-390-people');
    await phone.click('#people-btn');
  });

  await t.test('a screen share becomes the stage on every page', async () => {
    const presenter = sites[0];
    await presenter.page.click('#share');
    const key = await waitFor('observer subscribes to the screen', () => observer.evaluate(() =>
      [...window.sfuClient.grid.tiles.keys()].find((k) => k.startsWith('screen-'))), 20000);
    const pages = [observer, phone, sites[1].page];
    for (const [i, p] of pages.entries()) {
      await waitFor(`page ${i}: the screen is the stage`, () => p.evaluate((k) => {
        const tiles = [...document.querySelectorAll('#grid .tile')].filter((el) => !el.hidden);
        const screen = tiles.find((el) => el.dataset.key === k);
        if (!screen || !screen.classList.contains('on-stage')) return false;
        const area = (el) => el.offsetWidth * el.offsetHeight;
        return tiles.every((el) => el === screen || area(el) < area(screen));
      }, key), 30000).catch(async (e) => {
        await shot(p, `failed-stage-${i}`);
        console.log(`page ${i}`, await p.evaluate(() => [...document.querySelectorAll('#grid .tile')].map((el) => [el.dataset.key, el.hidden, el.className, el.offsetWidth, el.offsetHeight])));
        throw e;
      });
      const notice = await p.locator('#presenting-text').textContent();
      assert.equal(notice, STRINGS.vi.presenting.replace('{name}', presenter.name), `page ${i}`);
    }
    await waitFor('the observer decodes the screen', () => decodesScreen(observer, key), 20000);
    await waitFor('the phone decodes the screen', () => decodesScreen(phone, key), 20000);
    await checkLayout(observer, 'presentation');
    await checkLayout(phone, 'phone presentation');
    await checkControls(phone, 'phone presentation');
    await shot(observer, 'presentation-1366');
    await shot(phone, 'presentation-phone-390');
    // Zoom for detail (an X-ray): the picture grows, the tile stays in its box.
    const stageBox = async () => (await tileBoxes(observer)).filter((b) => b.key === key).map(({ x, y, w, h }) => ({ x, y, w, h }));
    const before = await stageBox();
    await observer.click('#zoom-in');
    await observer.click('#zoom-in');
    const transform = await observer.evaluate((k) => getComputedStyle(document.querySelector(`#grid .tile[data-key="${k}"] video`)).transform, key);
    assert.notEqual(transform, 'none', 'zoomed');
    assert.deepEqual(await stageBox(), before, 'zooming keeps the stage in its box');
    await shot(observer, 'presentation-zoomed');
    await observer.click('#zoom-reset');
    // The presenter's own page says so.
    assert.equal(await presenter.page.locator('#presenting-text').textContent(), STRINGS.vi.youPresenting);
    // Pinning a camera takes the stage from the screen, for this page only.
    const camKey = `p-${sites[1].id}`;
    await observer.locator(`#grid .tile[data-key="${camKey}"]`).hover().catch(() => {});
    await observer.evaluate((k) => document.querySelector(`#grid .tile[data-key="${k}"] .pin`).click(), camKey);
    await waitFor('pinned tile on the stage', () => observer.evaluate((k) => document.querySelector(`#grid .tile[data-key="${k}"]`).classList.contains('on-stage'), camKey));
    assert.equal(await observer.locator(`#grid .tile[data-key="${camKey}"] .pin`).getAttribute('aria-pressed'), 'true');
    await checkLayout(observer, 'pinned');
    await shot(observer, 'pinned-1366');
  });
  await ctx.close();
});
