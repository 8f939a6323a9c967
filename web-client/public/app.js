// Bootstrap: the entry page (no invite), the pre-join screen (an invite link),
// the meeting (tiles, layouts, people, devices), and the end screens. Every
// text comes from i18n.js and is drawn again when the language changes.
import { setLang, getLang, t } from './i18n.js';
import { Meeting } from './meeting.js';
import { Grid, initials } from './grid.js';
import { qualityForHeight } from './layers.js';
import { openSource, listDevices, levelMeter } from './media.js';
import { icon } from './icons.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
setLang(params.get('lang') || localStorage.getItem('lang') || 'vi');

const grid = new Grid($('grid'), () => {
  if (meeting && meeting.metrics.firstRemoteFrameAt === null) meeting.metrics.firstRemoteFrameAt = performance.now();
});
let meeting = null;
let session = null; // { room, name, token, role, title, localStream, attempt, timer, reconnects }
let screen = 'none'; // entry, prejoin, meeting, ended
let statusState = { key: null, vars: {}, warning: false };
let ended = null;   // { code }
// The last device failure per source ('camera', 'microphone'): shown until it
// is fixed, with "try again".
const deviceErrors = new Map();
const prefs = { camera: null, microphone: null }; // chosen device ids

// ---------------------------------------------------------------------------
// The invite: from the address bar once, then only from this tab's storage.

const INVITE_KEY = 'sfu.invite';

// The claims inside an invite token. The server verifies the token; the page
// only reads what it shows (name, role, title) and whether to open devices.
function tokenClaims(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(escape(atob(payload)));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

// A token that only allows receiving: the viewer role, or publishing turned off.
function receiveOnly(claims) {
  return claims.role === 'viewer' || claims.permissions?.publish === false;
}

function inviteFrom(room, token, direct = false) {
  const claims = tokenClaims(token);
  return {
    room,
    token,
    direct,
    name: typeof claims.name === 'string' ? claims.name : '',
    role: ['host', 'participant', 'viewer'].includes(claims.role) ? claims.role : 'participant',
    title: typeof claims.title === 'string' && claims.title.trim() ? claims.title.trim() : null,
    receiveOnly: receiveOnly(claims),
  };
}

// Take the token out of the address bar (it would otherwise sit in the
// history, bookmarks and screenshots) and keep it for this tab only: a
// reload or a reconnect uses it, another tab does not see it.
function takeInvite() {
  const room = params.get('room');
  const token = params.get('token');
  if (room && token) {
    const invite = inviteFrom(room, token, params.get('prejoin') === '0');
    try { sessionStorage.setItem(INVITE_KEY, JSON.stringify({ room, token, direct: invite.direct })); } catch { /* private mode */ }
    const keep = new URLSearchParams({ room });
    if (params.get('lang')) keep.set('lang', params.get('lang'));
    history.replaceState(null, '', `${location.pathname}?${keep}`);
    return invite;
  }
  try {
    const saved = JSON.parse(sessionStorage.getItem(INVITE_KEY) || 'null');
    if (saved?.token && room && saved.room === room) return inviteFrom(saved.room, saved.token, saved.direct);
  } catch { /* nothing kept */ }
  return null;
}

// ---------------------------------------------------------------------------
// Texts: status line, live region and toasts, title.

function setStatus(key, vars = {}, warning = false) {
  statusState = { key, vars, warning };
  renderStatus();
}

function renderStatus() {
  const { key, vars, warning } = statusState;
  $('status').textContent = key ? t(key, vars) : '';
  $('status').classList.toggle('warning', !!key && warning);
}

// A notice (a key of the string table and its values): read out by screen
// readers (live region) and shown for a moment (toast). Both keep the key, so
// a language switch redraws them too.
function announce(key, vars = {}) {
  if (!key) return;
  const data = JSON.stringify({ key, vars });
  const live = $('live');
  const line = document.createElement('p');
  line.dataset.notice = data;
  line.textContent = t(key, vars);
  live.append(line);
  while (live.children.length > 5) live.firstChild.remove();
  const toast = document.createElement('div');
  toast.className = 'toast';
  toast.dataset.notice = data;
  toast.textContent = t(key, vars);
  $('toasts').append(toast);
  while ($('toasts').children.length > 3) $('toasts').firstChild.remove();
  setTimeout(() => toast.remove(), 4000);
}

function renderNotices() {
  for (const el of document.querySelectorAll('[data-notice]')) {
    const { key, vars } = JSON.parse(el.dataset.notice);
    el.textContent = t(key, vars);
  }
}

function roomTitle() {
  return session?.title || session?.room || currentInvite?.title || currentInvite?.room || '';
}

function renderTitle() {
  const room = screen === 'entry' ? '' : roomTitle();
  $('title').textContent = room || t('appName');
  document.title = room ? `${room} · ${t('appName')}` : t('appName');
}

// ---------------------------------------------------------------------------
// Screens.

function show(which) {
  screen = which;
  for (const id of ['entry', 'prejoin', 'ended', 'meeting']) $(id).hidden = id !== which;
  renderTitle();
}

// The root URL without an invite: what to do, and a place to paste the link.
function showEntry(message = '') {
  show('entry');
  $('paste-error').textContent = message;
  $('paste-error').dataset.key = message ? 'badLink' : '';
}

$('paste-form').addEventListener('submit', (e) => {
  e.preventDefault();
  let url;
  try { url = new URL($('paste').value.trim(), location.href); } catch { url = null; }
  const room = url?.searchParams.get('room');
  const token = url?.searchParams.get('token');
  if (!room || !token) {
    $('paste-error').textContent = t('badLink');
    $('paste-error').dataset.key = 'badLink';
    return;
  }
  // Same server: open it here (the address bar keeps no token).
  const next = new URLSearchParams({ room, token });
  if (getLang() === 'en') next.set('lang', 'en');
  location.assign(`${location.pathname}?${next}`);
});

// ---------------------------------------------------------------------------
// Pre-join: preview, level meter, pickers, camera off / muted, who and where.

let currentInvite = null;
const pre = { camera: null, microphone: null, meter: null };

function stopPreview({ keep = false } = {}) {
  pre.meter?.stop();
  pre.meter = null;
  if (!keep) {
    pre.camera?.stop();
    pre.microphone?.stop();
  }
  pre.camera = null;
  pre.microphone = null;
  $('preview').srcObject = null;
}

async function showPrejoin(invite) {
  currentInvite = invite;
  show('prejoin');
  renderPrejoin();
  const viewer = invite.receiveOnly;
  $('prejoin-media').hidden = viewer;
  $('viewer-note').hidden = !viewer;
  if (viewer) return; // no capture, no preview for a viewer
  await openPreview('microphone');
  await openPreview('camera');
  await fillPickers([$('pick-camera'), $('pick-mic')]);
}

function renderPrejoin() {
  const inv = currentInvite;
  if (!inv) return;
  $('prejoin-title').textContent = inv.title || t('roomIs', { room: inv.room });
  const who = [];
  if (inv.name) who.push(t('joiningAs', { name: inv.name }));
  who.push(t('roleIs', { role: t(`role_${inv.role}`) }));
  $('prejoin-who').textContent = who.join(' · ');
  $('preview-off').textContent = initials(inv.name);
  renderDeviceErrors();
}

// Open one source for the preview (again, after "try again" or a picker change).
async function openPreview(kind) {
  const { track, error } = await openSource(kind, prefs[kind]);
  if (screen !== 'prejoin') { track?.stop(); return; }
  pre[kind]?.stop();
  pre[kind] = track ?? null;
  setDeviceError(kind, error ?? null);
  if (kind === 'camera') {
    $('preview').srcObject = track ? new MediaStream([track]) : null;
    $('preview-off').hidden = !!track && !$('join-cam-off').checked;
  } else {
    pre.meter?.stop();
    pre.meter = track ? levelMeter(track, (v) => { $('mic-level').value = v; }) : null;
  }
}

$('join-cam-off').addEventListener('change', () => {
  $('preview-off').hidden = !!pre.camera && !$('join-cam-off').checked;
  $('preview').hidden = $('join-cam-off').checked;
});

async function fillPickers([cameraSel, micSel]) {
  const devices = await listDevices();
  const fill = (sel, list, kind) => {
    const current = prefs[kind] ?? (kind === 'camera' ? localTrack('camera') : localTrack('microphone'))?.getSettings?.().deviceId;
    sel.replaceChildren(...list.map((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || t('deviceNumbered', { kind: t(kind === 'camera' ? 'cameraPicker' : 'micPicker'), n: i + 1 });
      if (d.deviceId === current) o.selected = true;
      return o;
    }));
    sel.disabled = list.length === 0;
  };
  fill(cameraSel, devices.camera, 'camera');
  fill(micSel, devices.microphone, 'microphone');
}

$('pick-camera').addEventListener('change', () => { prefs.camera = $('pick-camera').value; openPreview('camera'); });
$('pick-mic').addEventListener('change', () => { prefs.microphone = $('pick-mic').value; openPreview('microphone'); });

$('join-now').addEventListener('click', () => {
  const inv = currentInvite;
  const camOff = $('join-cam-off').checked;
  const muted = $('join-muted').checked;
  const mic = pre.microphone;
  let cam = pre.camera;
  stopPreview({ keep: true });
  // Camera off at the start: the camera is closed (its light goes out), and
  // "camera on" opens it again.
  if (cam && camOff) { cam.stop(); cam = null; }
  if (mic && muted) mic.enabled = false;
  join(inv, { mic, cam, prejoined: true });
});

// ---------------------------------------------------------------------------
// Device failures: a lasting line per source, with "try again".

function setDeviceError(kind, error) {
  if (error) deviceErrors.set(kind, error);
  else deviceErrors.delete(kind);
  renderDeviceErrors();
}

function renderDeviceErrors() {
  for (const box of [$('prejoin-device-errors'), $('device-errors')]) {
    const inMeeting = box.id === 'device-errors';
    box.replaceChildren(...[...deviceErrors].map(([kind, err]) => {
      const p = document.createElement('p');
      p.className = 'device-error';
      p.dataset.source = kind;
      p.setAttribute('role', 'alert');
      const text = document.createElement('span');
      text.textContent = t(`dev_${kind}_${err.kind}`, { err: err.name });
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'retry';
      retry.textContent = t('tryAgain');
      retry.addEventListener('click', () => (inMeeting ? retryInMeeting(kind) : openPreview(kind).then(() => fillPickers([$('pick-camera'), $('pick-mic')]))));
      p.append(text, retry);
      return p;
    }));
  }
}

async function retryInMeeting(kind) {
  const { track, error } = await openSource(kind, prefs[kind]);
  if (!track) { setDeviceError(kind, error); return; }
  setDeviceError(kind, null);
  addToLocalStream(track);
  const source = kind;
  if (meeting?.publishSource(source, track) && kind === 'camera') grid.setLocalVideo(track);
  refreshControls();
}

// ---------------------------------------------------------------------------
// The meeting.

function localTrack(source) {
  return meeting?.local.get(source)?.track ?? session?.localStream?.getTracks().find((x) => x.kind === (source === 'camera' ? 'video' : 'audio') && x.readyState === 'live') ?? null;
}

function addToLocalStream(track) {
  if (!session) return;
  if (!session.localStream) session.localStream = new MediaStream();
  for (const old of session.localStream.getTracks()) {
    if (old.kind === track.kind) session.localStream.removeTrack(old);
  }
  session.localStream.addTrack(track);
}

function control(id, iconName, text, pressed = null, extraClass = '') {
  const b = $(id);
  b.replaceChildren();
  const i = icon(iconName);
  const s = document.createElement('span');
  s.className = 'txt';
  s.textContent = text;
  b.append(i, s);
  b.title = text;
  if (pressed === null) b.removeAttribute('aria-pressed');
  else b.setAttribute('aria-pressed', String(pressed));
  b.className = `ctl ${extraClass}`.trim();
}

function refreshControls() {
  const mic = meeting?.local.get('microphone');
  const cam = meeting?.local.get('camera');
  const viewer = session?.receiveOnly || meeting?.role === 'viewer';
  // Muted and camera-off are amber (toggle-off), never the red of "leave".
  control('mic', mic?.muted || !mic ? 'micOff' : 'mic', mic?.muted || !mic ? t('unmuteMic') : t('muteMic'), !mic || !!mic.muted, 'toggle-off');
  control('cam', cam?.muted || !cam ? 'camOff' : 'cam', cam?.muted || !cam ? t('cameraOn') : t('cameraOff'), !cam || !!cam.muted, 'toggle-off');
  const sharing = !!meeting?.local.has('screen');
  control('share', 'screen', sharing ? t('stopShare') : t('share'), sharing, 'toggle-on');
  const hand = !!meeting && meeting.hands.has(meeting.participantId);
  control('hand', 'hand', hand ? t('lowerHand') : t('raiseHand'), hand, 'toggle-on');
  $('hand').disabled = !meeting || meeting.participantId === null;
  control('layout', grid.mode === 'speaker' ? 'gallery' : 'speaker', grid.mode === 'speaker' ? t('layoutGallery') : t('layoutSpeaker'), grid.mode === 'speaker', 'toggle-on');
  const count = meeting ? meeting.participants.size + 1 : 0;
  control('people-btn', 'people', t('peopleCount', { n: count }), !$('people').hidden, 'toggle-on');
  control('devices-btn', 'settings', t('devices'));
  control('leave', 'leave', t('leave'), null, 'danger');
  for (const id of ['mic', 'cam', 'share', 'devices-btn']) $(id).hidden = !!viewer;
  $('lang').textContent = t('language');
  if (meeting && grid.tiles.has('local')) {
    grid.setFlags('local', { micMuted: !mic || !!mic.muted, camOff: !cam || !!cam.muted });
  }
}

function remoteKey(r) {
  return r.info.source === 'screen' ? `screen-${r.info.track_id}` : `p-${r.participantId}`;
}

// Tell the server how the video tracks of one tile are shown: paused when the
// tile is off screen, on another page or the page is hidden; the layer by its
// height; pinned for the tile on the stage (first claim on the downlink after
// a screen share; a paused track has no claim to make).
function syncView(key) {
  const view = grid.view(key);
  if (!meeting || !view) return;
  const pinned = key === (grid.stage ?? grid.featured) && view.visible;
  for (const [trackId, r] of meeting.remote) {
    if (r.info.kind === 'video' && remoteKey(r) === key) {
      meeting.setView(trackId, { paused: !view.visible, quality: qualityForHeight(view.height), pinned });
    }
  }
}
grid.onView = syncView;

// Who speaks: the tiles of those speaking now are highlighted, one's own included.
function showSpeakers() {
  grid.setSpeaking(meeting.activeSpeakers.map((id) => (id === meeting.participantId ? 'local' : `p-${id}`)));
}

// The main speaker's tile comes first (and takes the stage in speaker view).
// When one speaks oneself, the last other speaker keeps the place.
function followDominant() {
  const id = meeting.dominantSpeaker;
  if (id === null || id === meeting.participantId || !meeting.participants.has(id)) return;
  const key = `p-${id}`;
  const before = grid.featured;
  if (before === key) return;
  grid.setFeatured(key);
  if (before) syncView(before);
  syncView(key);
}

function showQuality(e) {
  const { participantId, quality } = e.detail;
  const own = participantId === meeting.participantId;
  grid.setQuality(own ? 'local' : `p-${participantId}`, quality);
  if (own) showOwnQuality(quality);
  renderPeople();
}

function showOwnQuality(quality) {
  const el = $('own-quality');
  const bad = quality === 'poor' || quality === 'lost';
  el.hidden = !bad;
  el.dataset.quality = bad ? quality : '';
  el.textContent = bad ? t(`ownQuality_${quality}`) : '';
}

function participantState(participantId) {
  const p = meeting?.participants.get(participantId);
  if (!p) return null;
  const tracks = [...p.tracks.values()];
  const mic = tracks.find((x) => x.source === 'microphone');
  const cam = tracks.find((x) => x.source === 'camera');
  return { mic, cam, micMuted: !mic || mic.muted, camOff: !cam || cam.muted };
}

function applyRemoteFlags(participantId) {
  const s = participantState(participantId);
  if (!s) return;
  grid.setFlags(`p-${participantId}`, { micMuted: s.micMuted, camOff: s.camOff });
  // A viewer has no microphone or camera to be off: no badges, initials.
  grid.tiles.get(`p-${participantId}`)?.classList.toggle('viewer', meeting.participants.get(participantId)?.role === 'viewer');
  renderPeople();
}

// Reconnect backoff: the server's hint (shutdown.retry_after_ms) first, then
// doubling up to 10 s, with jitter so a restarted server is not hit at once.
const BACKOFF_MAX_MS = 10000;
// Reconnecting cannot fix these: the invite, the host, or another window decided.
const NO_RECONNECT = new Set(['unauthorized', 'invalid_token', 'token_expired', 'wrong_room', 'removed', 'replaced', 'room_full', 'invalid_room', 'invalid_name', 'unsupported_version', 'server_full', 'meeting_ended']);
// Where "join again" can work.
const CAN_REJOIN = new Set(['left', 'room_full', 'server_full', 'media_failed']);

async function join(invite, { mic = null, cam = null, prejoined = false } = {}) {
  currentInvite = invite;
  const viewer = invite.receiveOnly;
  show('meeting');
  ended = null;
  setStatus('connecting');
  if (!viewer && !prejoined) {
    // Straight in (a direct link, or "join again"): microphone and camera,
    // each on its own so that one refused leaves the other working.
    const m = await openSource('microphone', prefs.microphone);
    setDeviceError('microphone', m.error ?? null);
    mic = m.track ?? null;
    const c = await openSource('camera', prefs.camera);
    setDeviceError('camera', c.error ?? null);
    cam = c.track ?? null;
  }
  const tracks = [mic, cam].filter(Boolean);
  session = {
    room: invite.room,
    name: invite.name,
    token: invite.token,
    title: invite.title,
    receiveOnly: viewer,
    localStream: tracks.length ? new MediaStream(tracks) : null,
    attempt: 0,
    timer: null,
    reconnects: 0,
  };
  renderTitle();
  grid.clear();
  grid.setPinned(null);
  // Someone who only receives has no picture of their own to show.
  if (!viewer) {
    grid.tile('local', invite.name, { local: true });
    grid.setLocalVideo(cam);
  }
  renderDeviceErrors();
  startMeeting();
}

function startMeeting() {
  const { room, name, token, localStream } = session;
  meeting = new Meeting({ room, name, token, localStream });
  const current = meeting;
  window.sfuClient = { meeting, grid, session };
  $('downlink').hidden = true;
  // Grades belong to the old connection: unknown again until the server says.
  showOwnQuality(null);
  grid.setQuality('local', null);
  grid.setFlags('local', { hand: false });
  grid.setSpeaking([]);
  grid.setFeatured(null);
  let retryAfter = null;
  meeting.addEventListener('joined', () => {
    current.listed = true;
    session.attempt = 0;
    // Tiles kept frozen through the reconnect whose participant is gone.
    for (const key of grid.staleKeys()) grid.remove(key);
    $('reconnecting').hidden = true;
    setStatus('participants', { n: meeting.participants.size + 1 });
    refreshControls();
    renderPeople();
    renderLayout();
  });
  meeting.addEventListener('connection', (e) => { if (e.detail === 'connected') setStatus('connected'); });
  meeting.addEventListener('participant-joined', (e) => {
    const p = e.detail;
    const key = `p-${p.participant_id}`;
    grid.tile(key, p.name);
    applyRemoteFlags(p.participant_id);
    grid.setFlags(key, { hand: meeting.hands.has(p.participant_id) });
    if (p.participant_id === meeting.dominantSpeaker) followDominant();
    if (meeting.role === 'host') {
      grid.addHostControls(key, {
        onMute: () => meeting.moderate('mute', p.participant_id, 'microphone'),
        onAllow: () => meeting.moderate('allow', p.participant_id, 'microphone'),
        onRemove: () => confirmRemove(p.participant_id),
      });
    }
    // Those already there when one joins are not news.
    if (current.listed) {
      announce('joinedToast', { name: p.name });
      setStatus('participants', { n: meeting.participants.size + 1 });
    }
    refreshControls();
  });
  meeting.addEventListener('participant-left', (e) => {
    const key = `p-${e.detail}`;
    const name = grid.names.get(key)?.name;
    grid.remove(key);
    showSpeakers();
    for (const k of grid.keys()) {
      if (k.startsWith('screen-') && !meeting.remote.has(Number(k.slice(7)))) grid.remove(k);
    }
    if (name) announce('leftToast', { name });
    setStatus('participants', { n: meeting.participants.size + 1 });
    refreshControls();
    renderPeople();
  });
  meeting.addEventListener('remote-added', (e) => {
    const r = e.detail;
    const owner = meeting.participants.get(r.participantId);
    if (r.info.source === 'screen') grid.tile(remoteKey(r), owner?.name ?? '', { screen: true });
    grid.setTrack(remoteKey(r), r.transceiver.receiver.track);
    applyRemoteFlags(r.participantId);
    syncView(remoteKey(r));
  });
  meeting.addEventListener('remote-removed', (e) => {
    const r = e.detail;
    if (r.info.source === 'screen') grid.remove(remoteKey(r));
    applyRemoteFlags(r.participantId);
  });
  meeting.addEventListener('remote-changed', (e) => applyRemoteFlags(e.detail.participantId));
  meeting.addEventListener('speakers', showSpeakers);
  meeting.addEventListener('dominant-speaker', followDominant);
  meeting.addEventListener('downlink', (e) => { $('downlink').hidden = !e.detail.starved; });
  meeting.addEventListener('quality', showQuality);
  meeting.addEventListener('hand', (e) => {
    const { participantId, raised } = e.detail;
    const own = participantId === meeting.participantId;
    grid.setFlags(own ? 'local' : `p-${participantId}`, { hand: raised });
    if (raised && !own) announce('handUp', { name: meeting.participants.get(participantId)?.name ?? '' });
    refreshControls();
    renderPeople();
  });
  meeting.addEventListener('muted-by-host', () => { refreshControls(); announce('mutedByHost'); });
  meeting.addEventListener('server-error', (e) => {
    const code = e.detail.code;
    if (NO_RECONNECT.has(code)) { endMeeting(current, code); return; }
    if (!e.detail.handled) announce(`error_${code}`);
    // A join refused for now (busy, draining) leaves the socket open: close it
    // so the backoff reconnect tries again.
    if (meeting.participantId === null && ['server_busy', 'shutting_down'].includes(code)) meeting.sig.close();
  });
  meeting.addEventListener('shutdown', (e) => {
    retryAfter = e.detail.retry_after_ms;
    setStatus('restarting', {}, true);
  });
  meeting.addEventListener('closed', (e) => {
    if (!session || meeting !== current || current.leaving || current.fatal) return;
    // A final close whose `error` message was lost still ends the meeting.
    const reason = e.detail?.code === 4000 ? e.detail.reason : '';
    if (NO_RECONNECT.has(reason)) { endMeeting(current, reason); return; }
    scheduleReconnect(retryAfter);
  });
}

// Everything this page captures, off: camera, microphone, screen share, preview.
function stopAllCapture() {
  meeting?.stopLocalMedia();
  for (const track of session?.localStream?.getTracks() ?? []) track.stop();
  stopPreview();
  grid.setLocalVideo(null);
}

// The meeting is over for this page (left, removed, refused, replaced): no
// reconnect, every capture off, and an end screen that says why.
function endMeeting(m, code) {
  if (m) {
    m.fatal = true;
    if (code === 'left') { m.leaving = true; m.leave(); } else m.close();
  }
  if (session?.timer) { clearTimeout(session.timer); session.timer = null; }
  stopAllCapture();
  grid.clear();
  $('people').hidden = true;
  $('reconnecting').hidden = true;
  deviceErrors.clear();
  renderDeviceErrors();
  ended = { code };
  $('toasts').replaceChildren();
  show('ended');
  // The end screen says it; the header line would only repeat it.
  setStatus(null);
  renderEnded();
}

function renderEnded() {
  if (!ended) return;
  const { code } = ended;
  $('ended-heading').textContent = t(code === 'left' ? 'endHeading_left' : 'endHeading');
  $('ended-message').dataset.code = code;
  $('ended-message').textContent = t(code === 'left' ? 'left' : `error_${code}`);
  // Opened in another window: this one may take the meeting back (which ends the other).
  $('rejoin-here').hidden = code !== 'replaced';
  $('rejoin').hidden = !CAN_REJOIN.has(code) || !currentInvite;
}

function rejoin() {
  if (!currentInvite) return;
  if (currentInvite.direct) join(currentInvite);
  else showPrejoin(currentInvite);
}
$('rejoin-here').addEventListener('click', rejoin);
$('rejoin').addEventListener('click', rejoin);

// The connection dropped: the tiles stay, frozen under an overlay, until the
// rejoin says who is still there.
function scheduleReconnect(hintMs) {
  // The last pictures first: closing the connection ends the remote tracks.
  grid.markStale();
  meeting.close();
  session.attempt += 1;
  const base = hintMs ?? Math.min(BACKOFF_MAX_MS, 1000 * 2 ** (session.attempt - 1));
  const delay = Math.min(BACKOFF_MAX_MS, base) * (0.8 + Math.random() * 0.4);
  if (hintMs == null) setStatus('reconnecting', { n: session.attempt }, true);
  $('reconnecting').hidden = false;
  renderOverlay();
  session.timer = setTimeout(() => {
    session.timer = null;
    session.reconnects += 1;
    startMeeting();
  }, delay);
}

function renderOverlay() {
  $('reconnecting-text').textContent = statusState.key === 'restarting' || statusState.key === 'reconnecting'
    ? t(statusState.key, statusState.vars) : t('reconnecting', { n: session?.attempt ?? 1 });
}

function leave() {
  if (!meeting) return;
  const m = meeting;
  meeting = null;
  endMeeting(m, 'left');
}

// ---------------------------------------------------------------------------
// Controls.

async function toggleMic() {
  if (!meeting || session?.receiveOnly) return;
  const l = meeting.local.get('microphone');
  if (l) { meeting.setMuted('microphone', !l.muted); refreshControls(); return; }
  await retryInMeeting('microphone');
}

async function toggleCam() {
  if (!meeting || session?.receiveOnly) return;
  const l = meeting.local.get('camera');
  if (l) {
    meeting.setMuted('camera', !l.muted);
    refreshControls();
    return;
  }
  await retryInMeeting('camera');
}

function toggleHand() {
  if (!meeting || meeting.participantId === null) return;
  meeting.raiseHand(!meeting.hands.has(meeting.participantId));
}

async function toggleShare() {
  if (!meeting || session?.receiveOnly) return;
  if (meeting.local.has('screen')) {
    await meeting.stopScreenShare();
  } else {
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      const track = stream.getVideoTracks()[0];
      track.addEventListener('ended', () => { refreshControls(); renderLayout(); });
      await meeting.startScreenShare(track);
    } catch (e) {
      announce('noMedia', { err: e.name });
    }
  }
  refreshControls();
  renderLayout();
}

$('mic').addEventListener('click', toggleMic);
$('cam').addEventListener('click', toggleCam);
$('share').addEventListener('click', toggleShare);
$('hand').addEventListener('click', toggleHand);
$('leave').addEventListener('click', leave);
$('layout').addEventListener('click', () => {
  grid.setMode(grid.mode === 'speaker' ? 'gallery' : 'speaker');
  refreshControls();
});
$('people-btn').addEventListener('click', () => {
  $('people').hidden = !$('people').hidden;
  renderPeople();
  refreshControls();
  grid.layout();
});
grid.onPin = (key) => {
  grid.setPinned(grid.pinned === key ? null : key);
  renderLayout();
};

// Pages and the presentation bar follow every layout.
grid.onLayout = () => renderLayout();
function renderLayout() {
  const s = grid.state();
  $('pager').hidden = s.pages <= 1 || screen !== 'meeting';
  $('page-label').textContent = t('pageOf', { n: s.page + 1, total: s.pages });
  $('page-prev').disabled = s.page === 0;
  $('page-next').disabled = s.page >= s.pages - 1;
  const stageScreen = s.stage?.startsWith('screen-') ? s.stage : null;
  const ownShare = !!meeting?.local.has('screen');
  $('presenting').hidden = !stageScreen && !ownShare;
  let text = '';
  if (stageScreen) text = t('presenting', { name: grid.names.get(stageScreen)?.name ?? '' });
  else if (ownShare) text = t('youPresenting');
  $('presenting-text').textContent = text;
  for (const id of ['zoom-in', 'zoom-out', 'zoom-reset', 'fullscreen']) $(id).hidden = !stageScreen;
  if (zoom.key && zoom.key !== stageScreen) resetZoom();
  $('alone').hidden = screen !== 'meeting' || !meeting || meeting.participantId === null || meeting.participants.size > 0;
}
$('page-prev').addEventListener('click', () => grid.setPage(grid.page - 1));
$('page-next').addEventListener('click', () => grid.setPage(grid.page + 1));

// Zoom and pan on the shared screen (an X-ray, a spreadsheet): buttons, the
// mouse wheel, and dragging.
const zoom = { key: null, scale: 1, x: 0, y: 0 };
function applyZoom() {
  const tile = zoom.key && grid.tiles.get(zoom.key);
  if (!tile) return;
  const v = tile.querySelector('video');
  const w = tile.clientWidth;
  const h = tile.clientHeight;
  // Keep the picture covering the tile's box when zoomed.
  zoom.x = Math.min(0, Math.max(w - w * zoom.scale, zoom.x));
  zoom.y = Math.min(0, Math.max(h - h * zoom.scale, zoom.y));
  v.style.transform = zoom.scale === 1 ? '' : `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.scale})`;
  tile.classList.toggle('zoomed', zoom.scale > 1);
}
function setZoom(scale, cx = null, cy = null) {
  const key = grid.stage?.startsWith('screen-') ? grid.stage : null;
  if (!key) return;
  if (zoom.key !== key) resetZoom();
  zoom.key = key;
  const tile = grid.tiles.get(key);
  const next = Math.max(1, Math.min(6, scale));
  const px = cx ?? tile.clientWidth / 2;
  const py = cy ?? tile.clientHeight / 2;
  zoom.x = px - ((px - zoom.x) * next) / zoom.scale;
  zoom.y = py - ((py - zoom.y) * next) / zoom.scale;
  zoom.scale = next;
  applyZoom();
}
function resetZoom() {
  const tile = zoom.key && grid.tiles.get(zoom.key);
  if (tile) { tile.querySelector('video').style.transform = ''; tile.classList.remove('zoomed'); }
  Object.assign(zoom, { key: null, scale: 1, x: 0, y: 0 });
}
$('zoom-in').addEventListener('click', () => setZoom(zoom.scale * 1.5));
$('zoom-out').addEventListener('click', () => setZoom(zoom.scale / 1.5));
$('zoom-reset').addEventListener('click', resetZoom);
$('grid').addEventListener('wheel', (e) => {
  const tile = e.target.closest('.tile.on-stage.screen');
  if (!tile) return;
  e.preventDefault();
  const r = tile.getBoundingClientRect();
  setZoom(zoom.scale * (e.deltaY < 0 ? 1.2 : 1 / 1.2), e.clientX - r.left, e.clientY - r.top);
}, { passive: false });
let drag = null;
$('grid').addEventListener('pointerdown', (e) => {
  const tile = e.target.closest('.tile.on-stage.screen.zoomed');
  if (!tile || e.target.closest('button')) return;
  drag = { x: e.clientX - zoom.x, y: e.clientY - zoom.y };
  tile.setPointerCapture(e.pointerId);
});
$('grid').addEventListener('pointermove', (e) => {
  if (!drag) return;
  zoom.x = e.clientX - drag.x;
  zoom.y = e.clientY - drag.y;
  applyZoom();
});
$('grid').addEventListener('pointerup', () => { drag = null; });
$('fullscreen').addEventListener('click', () => {
  const tile = grid.stage && grid.tiles.get(grid.stage);
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else tile?.requestFullscreen?.().catch(() => {});
});

// ---------------------------------------------------------------------------
// People: everyone's microphone, camera, connection and role; the host's actions.

// A question before an action that cannot be undone: remove someone, end the meeting.
let confirmed = null;
function ask(text, yes, action) {
  $('confirm-text').textContent = text;
  $('confirm-yes').textContent = yes;
  confirmed = action;
  $('confirm-dialog').showModal();
}
$('confirm-no').addEventListener('click', () => { confirmed = null; $('confirm-dialog').close(); });
$('confirm-yes').addEventListener('click', () => {
  $('confirm-dialog').close();
  const action = confirmed;
  confirmed = null;
  action?.();
});

function confirmRemove(participantId) {
  const p = meeting?.participants.get(participantId);
  if (!p) return;
  ask(t('confirmRemove', { name: p.name }), t('hostRemove'), () => {
    meeting?.moderate('remove', participantId);
    announce('removedToast', { name: p.name });
  });
}
$('lower-hands').addEventListener('click', () => {
  if (!meeting) return;
  for (const id of meeting.hands) if (id !== meeting.participantId) meeting.moderate('lower_hand', id);
});
$('end-all').addEventListener('click', () => ask(t('confirmEnd'), t('endForAll'), () => meeting?.endMeeting()));
$('mute-all').addEventListener('click', () => {
  if (!meeting) return;
  for (const [id] of meeting.participants) {
    const s = participantState(id);
    if (s?.mic && !s.mic.muted) meeting.moderate('mute', id, 'microphone');
  }
  announce('mutedAll');
});

function renderPeople() {
  if (!meeting || $('people').hidden) return;
  const host = meeting.role === 'host';
  $('people-heading').textContent = t('peopleCount', { n: meeting.participants.size + 1 });
  $('people-host').hidden = !host;
  const rows = [];
  const row = (id, name, role, s, quality, self) => {
    const li = document.createElement('li');
    li.dataset.participant = String(id);
    const who = document.createElement('div');
    who.className = 'who';
    const n = document.createElement('span');
    n.className = 'pname';
    n.textContent = self ? t('youLabel', { name }) : name;
    who.append(n);
    if (role) {
      const r = document.createElement('span');
      r.className = 'role';
      r.textContent = t(`role_${role}`);
      who.append(r);
    }
    const state = document.createElement('div');
    state.className = 'state';
    const item = (text, cls = '') => { const x = document.createElement('span'); x.textContent = text; if (cls) x.className = cls; state.append(x); };
    if (role !== 'viewer') {
      item(s.micMuted ? t('micMuted') : t('mic'), s.micMuted ? 'off' : '');
      item(s.camOff ? t('camOff') : t('camera'), s.camOff ? 'off' : '');
    }
    if (meeting.hands.has(id)) item(t('handRaised'), 'hand');
    if (quality) item(t(`quality_${quality}`).split(':')[0], quality === 'poor' || quality === 'lost' ? 'bad' : '');
    li.append(who, state);
    if (host && !self) {
      const actions = document.createElement('div');
      actions.className = 'actions';
      const b = (cls, text, label, fn) => {
        const x = document.createElement('button');
        x.type = 'button';
        x.className = cls;
        x.textContent = text;
        x.setAttribute('aria-label', label);
        x.addEventListener('click', fn);
        actions.append(x);
      };
      if (s.mic && !s.mic.muted) b('host-mute', t('hostMute'), t('hostMuteOf', { name }), () => meeting.moderate('mute', id, 'microphone'));
      if (role !== 'viewer') b('host-allow', t('hostAllow'), t('hostAllowOf', { name }), () => meeting.moderate('allow', id, 'microphone'));
      if (meeting.hands.has(id)) b('host-lower-hand', t('lowerHand'), t('lowerHandOf', { name }), () => meeting.moderate('lower_hand', id));
      b('host-remove', t('hostRemove'), t('hostRemoveOf', { name }), () => confirmRemove(id));
      li.append(actions);
    }
    rows.push(li);
  };
  const mine = { mic: meeting.local.get('microphone'), cam: meeting.local.get('camera') };
  row(meeting.participantId, session.name, meeting.role, { micMuted: !mine.mic || mine.mic.muted, camOff: !mine.cam || mine.cam.muted }, meeting.quality.get(meeting.participantId), true);
  for (const [id, p] of meeting.participants) {
    row(id, p.name, p.role ?? null, participantState(id), meeting.quality.get(id), false);
  }
  $('people-list').replaceChildren(...rows);
}

// ---------------------------------------------------------------------------
// Devices during the call: another camera or microphone without leaving.

$('devices-btn').addEventListener('click', async () => {
  await fillPickers([$('call-camera'), $('call-mic')]);
  $('devices-dialog').showModal();
});
async function switchDevice(kind, deviceId) {
  prefs[kind] = deviceId;
  const l = meeting?.local.get(kind);
  if (!l) return; // used when the source is turned on
  const { track, error } = await openSource(kind, deviceId);
  if (!track) { setDeviceError(kind, error); return; }
  setDeviceError(kind, null);
  const old = l.track;
  await meeting.replaceSource(kind, track);
  old.stop();
  addToLocalStream(track);
  if (kind === 'camera') grid.setLocalVideo(track);
}
$('call-camera').addEventListener('change', () => switchDevice('camera', $('call-camera').value));
$('call-mic').addEventListener('change', () => switchDevice('microphone', $('call-mic').value));

// ---------------------------------------------------------------------------
// Keyboard: M microphone, V camera, S share, H hand, ? help.

$('help-btn').addEventListener('click', () => $('help-dialog').showModal());
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest?.('input, select, textarea, dialog')) return;
  if (e.key === '?') { $('help-dialog').showModal(); e.preventDefault(); return; }
  if (screen !== 'meeting') return;
  const k = e.key.toLowerCase();
  if (k === 'm') toggleMic();
  else if (k === 'v') toggleCam();
  else if (k === 's') toggleShare();
  else if (k === 'h') toggleHand();
  else return;
  e.preventDefault();
});

// ---------------------------------------------------------------------------
// Language: everything is drawn again.

function renderAll() {
  renderStatus();
  renderNotices();
  renderTitle();
  refreshControls();
  grid.relabel();
  renderLayout();
  renderPeople();
  renderPrejoin();
  renderDeviceErrors();
  renderEnded();
  if (!$('reconnecting').hidden) renderOverlay();
  const own = $('own-quality').dataset.quality;
  if (own) $('own-quality').textContent = t(`ownQuality_${own}`);
  if ($('paste-error').dataset.key) $('paste-error').textContent = t($('paste-error').dataset.key);
  $('help-btn').setAttribute('aria-label', t('help'));
}
$('lang').addEventListener('click', () => {
  const next = getLang() === 'vi' ? 'en' : 'vi';
  localStorage.setItem('lang', next);
  setLang(next);
  renderAll();
});

// ---------------------------------------------------------------------------
// Start.

renderAll();
const invite = takeInvite();
if (invite) {
  currentInvite = invite;
  if (invite.direct) join(invite);
  else showPrejoin(invite);
} else if (params.get('room') && params.get('name')) {
  // Development servers (auth.allow_tokenless) take a room and a name.
  join({ room: params.get('room'), name: params.get('name'), token: null, role: 'participant', title: null, receiveOnly: false, direct: true });
} else {
  showEntry();
}
