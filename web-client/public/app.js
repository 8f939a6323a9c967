// Bootstrap: the join screen, invite links (/?room=R&name=N[&lang=en]), and
// wiring the meeting's events to the grid and the controls.
import { setLang, getLang, t } from './i18n.js';
import { Meeting } from './meeting.js';
import { Grid } from './grid.js';
import { qualityForHeight } from './layers.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
setLang(params.get('lang') || localStorage.getItem('lang') || 'vi');

const grid = new Grid($('grid'), (key) => {
  if (meeting && meeting.metrics.firstRemoteFrameAt === null) meeting.metrics.firstRemoteFrameAt = performance.now();
});
let meeting = null;

function status(text) {
  $('status').textContent = text;
  $('status').classList.remove('warning');
}

function refreshControls() {
  const mic = meeting?.local.get('microphone');
  const cam = meeting?.local.get('camera');
  $('mic').textContent = mic?.muted ? t('unmuteMic') : t('muteMic');
  $('mic').classList.toggle('on', !!mic?.muted);
  $('cam').textContent = cam?.muted ? t('cameraOn') : t('cameraOff');
  $('cam').classList.toggle('on', !!cam?.muted);
  $('share').textContent = meeting?.local.has('screen') ? t('stopShare') : t('share');
  $('lang').textContent = t('language');
  if (meeting) {
    grid.setFlags('local', { micMuted: !!mic?.muted, camOff: !!cam?.muted });
  }
}

function remoteKey(r) {
  return r.info.source === 'screen' ? `screen-${r.info.track_id}` : `p-${r.participantId}`;
}

// Tell the server how the video tracks of one tile are shown: paused when the
// tile is off screen, hidden or on a hidden page; the layer by its height;
// pinned for the speaker's tile while it is shown (first claim on the downlink
// after a screen share; a paused track has no claim to make).
function syncView(key) {
  const view = grid.view(key);
  if (!meeting || !view) return;
  const pinned = key === grid.featured && view.visible;
  for (const [trackId, r] of meeting.remote) {
    if (r.info.kind === 'video' && remoteKey(r) === key) {
      meeting.setView(trackId, { paused: !view.visible, quality: qualityForHeight(view.height), pinned });
    }
  }
}
grid.onView = syncView;

// Who speaks (docs/signaling-protocol.md, "Speakers"): the tiles of those
// speaking now are highlighted, one's own included.
function showSpeakers() {
  grid.setSpeaking(meeting.activeSpeakers.map((id) => (id === meeting.participantId ? 'local' : `p-${id}`)));
}

// Speaker view follows the dominant speaker: their tile takes the grid's first
// place and its camera is pinned. When one speaks oneself, the last other
// speaker keeps the place: one's own tile never takes it.
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

// Connection quality (docs/signaling-protocol.md, "Connection quality"): every
// participant's tile shows its grade, one's own included, and one's own poor
// or lost connection also gets a line in the banner above the grid.
function showQuality(e) {
  const { participantId, quality } = e.detail;
  const own = participantId === meeting.participantId;
  grid.setQuality(own ? 'local' : `p-${participantId}`, quality);
  if (own) showOwnQuality(quality);
}

function showOwnQuality(quality) {
  const el = $('own-quality');
  const bad = quality === 'poor' || quality === 'lost';
  el.hidden = !bad;
  el.dataset.quality = bad ? quality : '';
  el.textContent = bad ? t(`ownQuality_${quality}`) : '';
}

function applyRemoteFlags(participantId) {
  const p = meeting.participants.get(participantId);
  if (!p) return;
  const tracks = [...p.tracks.values()];
  const mic = tracks.find((x) => x.source === 'microphone');
  const cam = tracks.find((x) => x.source === 'camera');
  grid.setFlags(`p-${participantId}`, { micMuted: !mic || mic.muted, camOff: !cam || cam.muted });
}

// Reconnect backoff: the server's hint (shutdown.retry_after_ms) first, then
// doubling up to 10 s, with jitter so a restarted server is not hit at once.
const BACKOFF_MAX_MS = 10000;
// `replaced`: the same identity joined again elsewhere (a reload, a second tab);
// reconnecting would replace that one in turn, forever.
const NO_RECONNECT = new Set(['unauthorized', 'invalid_token', 'token_expired', 'wrong_room', 'removed', 'replaced', 'room_full', 'invalid_room', 'invalid_name', 'unsupported_version']);
let session = null; // { room, name, localStream, attempt, timer }

// The claims inside an invite token. The server verifies the token; the page
// only reads the name (to label the local tile before `joined` arrives) and the
// role (a viewer never opens the camera or microphone).
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

function nameInToken(token) {
  const name = tokenClaims(token).name;
  return typeof name === 'string' ? name : '';
}

// A token that only allows receiving: the viewer role, or publishing turned off.
function receiveOnlyToken(token) {
  if (!token) return false;
  const claims = tokenClaims(token);
  return claims.role === 'viewer' || claims.permissions?.publish === false;
}

async function join(room, name, token = null) {
  $('join-form').hidden = true;
  $('meeting').hidden = false;
  status(t('connecting'));
  let localStream = null;
  if (!receiveOnlyToken(token)) {
    try {
      // 1280x720: Chromium sends fewer simulcast layers for a smaller picture.
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
    } catch (e) {
      status(t('noMedia', { err: e.name }));
    }
  }
  session = { room, name, token, localStream, attempt: 0, timer: null, reconnects: 0 };
  // Someone who only receives has no picture of their own to show.
  if (!receiveOnlyToken(token)) {
    const local = grid.tile('local', `${name} (${t('you')})`, { local: true });
    if (localStream) local.querySelector('video').srcObject = localStream;
  }
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
  grid.setSpeaking([]);
  grid.setFeatured(null);
  let retryAfter = null;
  meeting.addEventListener('joined', () => {
    session.attempt = 0;
    status(t('participants', { n: meeting.participants.size + 1 }));
    // A viewer has nothing to mute or share.
    for (const id of ['mic', 'cam', 'share']) $(id).hidden = meeting.role === 'viewer';
    refreshControls();
  });
  meeting.addEventListener('connection', (e) => { if (e.detail === 'connected') status(t('connected')); });
  meeting.addEventListener('participant-joined', (e) => {
    const p = e.detail;
    grid.tile(`p-${p.participant_id}`, p.name);
    applyRemoteFlags(p.participant_id);
    if (p.participant_id === meeting.dominantSpeaker) followDominant();
    if (meeting.role === 'host') {
      grid.addHostControls(`p-${p.participant_id}`, {
        onMute: () => meeting.moderate('mute', p.participant_id, 'microphone'),
        onAllow: () => meeting.moderate('allow', p.participant_id, 'microphone'),
        onRemove: () => meeting.moderate('remove', p.participant_id),
      });
    }
  });
  meeting.addEventListener('participant-left', (e) => {
    if (grid.featured === `p-${e.detail}`) grid.setFeatured(null);
    grid.remove(`p-${e.detail}`);
    showSpeakers();
    for (const key of grid.keys()) {
      if (key.startsWith('screen-') && !meeting.remote.has(Number(key.slice(7)))) grid.remove(key);
    }
  });
  meeting.addEventListener('remote-added', (e) => {
    const r = e.detail;
    const owner = meeting.participants.get(r.participantId);
    if (r.info.source === 'screen') grid.tile(remoteKey(r), t('screenOf', { name: owner?.name ?? '' }), { screen: true });
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
  meeting.addEventListener('muted-by-host', () => { refreshControls(); status(t('mutedByHost')); });
  meeting.addEventListener('server-error', (e) => {
    status(t(`error_${e.detail.code}`) || e.detail.message);
    // Reconnecting cannot fix these: the invite, the host, or another window decided.
    if (NO_RECONNECT.has(e.detail.code)) endMeeting(current, e.detail.code);
    // A join refused for now (server full, busy, draining) leaves the socket open:
    // close it so the backoff reconnect tries again.
    else if (meeting.participantId === null && ['server_full', 'server_busy', 'shutting_down'].includes(e.detail.code)) meeting.sig.close();
  });
  meeting.addEventListener('shutdown', (e) => {
    retryAfter = e.detail.retry_after_ms;
    showBanner(t('restarting'));
  });
  meeting.addEventListener('closed', (e) => {
    if (!session || meeting !== current || current.leaving || current.fatal) return;
    // A final close whose `error` message was lost still ends the meeting.
    const reason = e.detail?.code === 4000 ? e.detail.reason : '';
    if (NO_RECONNECT.has(reason)) {
      status(t(`error_${reason}`));
      endMeeting(current, reason);
      return;
    }
    scheduleReconnect(retryAfter);
  });
}

// The server ended this meeting for good: no reconnect, camera and microphone
// off, and an end screen instead of a frozen meeting.
function endMeeting(m, code) {
  m.fatal = true;
  m.stopLocalMedia();
  m.close();
  if (session?.timer) { clearTimeout(session.timer); session.timer = null; }
  const preview = $('grid').querySelector('.tile.local video');
  if (preview) preview.srcObject = null;
  for (const key of grid.keys()) if (key !== 'local') grid.remove(key);
  $('meeting').hidden = true;
  $('ended').hidden = false;
  $('ended-message').dataset.code = code;
  $('ended-message').textContent = t(`error_${code}`) || code;
  // The end screen says it; the header line would only repeat it (and crowd a phone's header).
  status('');
  // Opened in another window: this one may take the meeting back (which ends the other).
  $('rejoin-here').hidden = code !== 'replaced';
}
$('rejoin-here').addEventListener('click', () => location.reload());

function scheduleReconnect(hintMs) {
  meeting.close();
  // Remote tiles belong to the old connection; the rejoin lists everyone again.
  for (const key of grid.keys()) if (key !== 'local') grid.remove(key);
  session.attempt += 1;
  const base = hintMs ?? Math.min(BACKOFF_MAX_MS, 1000 * 2 ** (session.attempt - 1));
  const delay = Math.min(BACKOFF_MAX_MS, base) * (0.8 + Math.random() * 0.4);
  if (hintMs == null) showBanner(t('reconnecting', { n: session.attempt }));
  session.timer = setTimeout(() => {
    session.timer = null;
    session.reconnects += 1;
    startMeeting();
  }, delay);
}

function showBanner(text) {
  status(text);
  $('status').classList.add('warning');
}

function leave() {
  if (!meeting) return;
  meeting.leaving = true;
  meeting.leave();
  meeting = null;
  if (session?.timer) clearTimeout(session.timer);
  session = null;
  grid.clear();
  $('meeting').hidden = true;
  showForm(t('left'));
}

function showForm(message = '') {
  $('join-form').hidden = false;
  $('join-error').textContent = message;
  $('room').value = params.get('room') || $('room').value;
  $('name').value = params.get('name') || $('name').value;
}

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  history.replaceState(null, '', `?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}${getLang() === 'en' ? '&lang=en' : ''}`);
  join(room, name);
});
$('mic').addEventListener('click', () => {
  const l = meeting?.local.get('microphone');
  if (l) { meeting.setMuted('microphone', !l.muted); refreshControls(); }
});
$('cam').addEventListener('click', () => {
  const l = meeting?.local.get('camera');
  if (l) { meeting.setMuted('camera', !l.muted); refreshControls(); }
});
$('share').addEventListener('click', async () => {
  if (!meeting) return;
  if (meeting.local.has('screen')) {
    await meeting.stopScreenShare();
  } else {
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      await meeting.startScreenShare(stream.getVideoTracks()[0]);
    } catch (e) {
      status(t('noMedia', { err: e.name }));
    }
  }
  refreshControls();
});
$('leave').addEventListener('click', leave);
$('lang').addEventListener('click', () => {
  const next = getLang() === 'vi' ? 'en' : 'vi';
  localStorage.setItem('lang', next);
  setLang(next);
  refreshControls();
  grid.relabel();
  const own = $('own-quality').dataset.quality;
  if (own) $('own-quality').textContent = t(`ownQuality_${own}`);
  const ended = $('ended-message').dataset.code;
  if (ended) $('ended-message').textContent = t(`error_${ended}`) || ended;
});

refreshControls();
if (params.get('room') && params.get('token')) {
  const token = params.get('token');
  join(params.get('room'), nameInToken(token) || params.get('name') || '', token);
} else if (params.get('room') && params.get('name')) {
  join(params.get('room'), params.get('name'));
} else {
  showForm();
}
