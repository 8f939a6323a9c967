// One meeting: the websocket, the single bundled RTCPeerConnection, and the
// state of who publishes what. The client is always the SDP offerer; each
// offer lists every m-line it publishes on and every m-line it receives on.
import { Signaling, signalingUrl, PROTOCOL_VERSION } from './signaling.js';
import { sendEncodings, setActiveLayers, SubscriptionUpdates } from './layers.js';

// The grades of `connection_quality`, best first.
export const QUALITIES = ['excellent', 'good', 'poor', 'lost'];

// The codecs the server forwards (docs/signaling-protocol.md, "RTP and SDP
// contract"): a receiving m-line offers only these. Chromium's full list
// (VP9, AV1, ulpfec, flexfec, a dozen H.264 variants) makes each video m-line
// about three times longer, and a 40-site briefing has 80 of them in every
// offer: the offer would pass the server's size limits only without them.
const SERVER_CODECS = {
  audio: (c) => ['audio/opus', 'audio/red'].includes(c.mimeType.toLowerCase()),
  video: (c) => {
    const mime = c.mimeType.toLowerCase();
    if (mime === 'video/vp8' || mime === 'video/rtx') return true;
    if (mime !== 'video/h264') return false;
    const fmtp = c.sdpFmtpLine ?? '';
    return /packetization-mode=1/.test(fmtp) && /profile-level-id=42e01f/i.test(fmtp);
  },
};

// mid -> { kind, port, direction, bundleOnly } of each m-section of an SDP.
export function mediaLines(sdp) {
  const out = new Map();
  let cur = null;
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^m=(\w+) (\d+)/.exec(line);
    if (m) { cur = { kind: m[1], port: m[2], direction: 'sendrecv', mid: null, bundleOnly: false }; continue; }
    if (!cur) continue;
    if (line === 'a=bundle-only') cur.bundleOnly = true;
    const mid = /^a=mid:(.+)$/.exec(line);
    if (mid) { cur.mid = mid[1]; out.set(cur.mid, cur); }
    const dir = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line);
    if (dir) cur.direction = dir[1];
  }
  return out;
}

function preferServerCodecs(transceiver, kind) {
  try {
    const codecs = RTCRtpReceiver.getCapabilities?.(kind)?.codecs?.filter(SERVER_CODECS[kind]) ?? [];
    // RED first: a microphone then sends each Opus frame twice (RFC 2198), and
    // a listener on a lossy link gets the lost one back from the next packet.
    // The server passes it on, or takes the Opus out for legs without RED.
    if (kind === 'audio') codecs.sort((a, b) => /red/i.test(b.mimeType) - /red/i.test(a.mimeType));
    if (codecs.some((c) => !/rtx|red/i.test(c.mimeType))) transceiver.setCodecPreferences(codecs);
  } catch { /* the browser's own list, then */ }
}

export class Meeting extends EventTarget {
  constructor({ room, name, token = null, localStream }) {
    super();
    this.room = room;
    this.name = name;
    this.localStream = localStream;
    this.participantId = null;
    this.participants = new Map(); // id -> { name, tracks: Map(trackId -> info) }
    this.remote = new Map();       // trackId -> { participantId, info, transceiver }
    this.local = new Map();        // source -> { transceiver, track, muted, trackId, activeLayers }
    this.layers = [];              // joined.simulcast.layers: how to encode the camera
    // Who speaks (docs/signaling-protocol.md, "Speakers"): the participants
    // speaking now, loudest first, and the main speaker (null until announced).
    this.activeSpeakers = [];
    this.dominantSpeaker = null;
    // Connection quality (docs/signaling-protocol.md, "Connection quality"):
    // participant id (one's own too) -> excellent, good, poor or lost. Nobody
    // is in it until the server's first `connection_quality` for them.
    this.quality = new Map();
    // Raised hands (docs/signaling-protocol.md, "Hands"): participant ids, one's own too.
    this.hands = new Set();
    this.negotiating = false;
    this.renegotiate = false;
    this.metrics = { wsOpenAt: null, joinedAt: null, firstRemoteFrameAt: null };
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc.addEventListener('connectionstatechange', () => this.emit('connection', this.pc.connectionState));
    this.sig = new Signaling(signalingUrl());
    this.views = new SubscriptionUpdates((msg) => this.sig.send(msg));
    this.offeredSubscribe = [];    // track ids in the offer awaiting its answer
    this.sig.addEventListener('open', () => {
      this.metrics.wsOpenAt = performance.now();
      const join = { type: 'join', v: PROTOCOL_VERSION, room, name };
      if (token) join.token = token;
      this.sig.send(join);
    });
    this.sig.addEventListener('message', (e) => this.onMessage(e.detail));
    this.sig.addEventListener('close', (e) => this.emit('closed', e.detail));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  onMessage(msg) {
    switch (msg.type) {
      case 'joined':
        this.metrics.joinedAt = performance.now();
        this.participantId = msg.participant_id;
        this.role = msg.role;
        // A server without `simulcast` predates layers and subscription updates
        // (it would refuse `update_subscription`): one layer, no updates.
        this.layers = Array.isArray(msg.simulcast?.layers) ? msg.simulcast.layers : [];
        this.views.enabled = msg.simulcast !== undefined;
        // Who speaks as we arrive (only when someone does): their tile comes
        // first from the start, as after a later `dominant_speaker`.
        this.dominantSpeaker = msg.dominant_speaker ?? null;
        for (const p of msg.participants) this.addParticipant(p);
        // A viewer's invite allows receiving only; the server would refuse a publish.
        if (this.role !== 'viewer') this.publishInitial();
        for (const p of msg.participants) for (const t of p.tracks) this.subscribe(p.participant_id, t);
        this.emit('joined', msg);
        if (this.dominantSpeaker !== null) this.emit('dominant-speaker', this.dominantSpeaker);
        this.negotiate();
        break;
      case 'participant_joined':
        this.addParticipant(msg.participant);
        for (const t of msg.participant.tracks) this.subscribe(msg.participant.participant_id, t);
        this.negotiate();
        break;
      case 'participant_left': {
        const p = this.participants.get(msg.participant_id);
        if (p) for (const trackId of p.tracks.keys()) this.unsubscribe(trackId);
        this.participants.delete(msg.participant_id);
        // The server may not announce that someone who left stopped speaking.
        this.activeSpeakers = this.activeSpeakers.filter((id) => id !== msg.participant_id);
        if (this.dominantSpeaker === msg.participant_id) this.dominantSpeaker = null;
        this.quality.delete(msg.participant_id);
        this.hands.delete(msg.participant_id);
        this.emit('participant-left', msg.participant_id);
        this.negotiate();
        break;
      }
      case 'track_published':
        this.participants.get(msg.participant_id)?.tracks.set(msg.track.track_id, msg.track);
        this.subscribe(msg.participant_id, msg.track);
        this.negotiate();
        break;
      case 'track_unpublished':
        this.participants.get(msg.participant_id)?.tracks.delete(msg.track_id);
        this.unsubscribe(msg.track_id);
        this.negotiate();
        break;
      case 'mute_changed': {
        if (msg.participant_id === this.participantId) {
          // The host muted one of our sources: mute it here too.
          for (const [source, l] of this.local) {
            if (l.trackId === msg.track_id && !l.muted) { l.muted = true; l.track.enabled = false; this.emit('muted-by-host', source); }
          }
          break;
        }
        const r = this.remote.get(msg.track_id);
        if (r) { r.info.muted = msg.muted; this.emit('remote-changed', r); }
        break;
      }
      case 'answer':
        this.onAnswer(msg);
        break;
      // The server moved a stalled subscription to a fresh SSRC: a new offer
      // (answered as usual) tells this side.
      case 'renegotiate':
        this.negotiate();
        break;
      case 'error':
        this.onError(msg);
        this.emit('server-error', msg);
        break;
      case 'shutdown':
        this.emit('shutdown', msg);
        break;
      case 'publish_layers':
        this.onPublishLayers(msg);
        break;
      // The server paused our video for a starved downlink (or resumed it).
      case 'downlink':
        this.emit('downlink', msg);
        break;
      case 'active_speakers':
        this.activeSpeakers = Array.isArray(msg.participant_ids) ? msg.participant_ids : [];
        this.emit('speakers', this.activeSpeakers);
        break;
      case 'dominant_speaker':
        this.dominantSpeaker = msg.participant_id ?? null;
        this.emit('dominant-speaker', this.dominantSpeaker);
        break;
      // A participant's grade changed (one's own included). A grade this
      // client does not know (a newer server's) shows nothing.
      case 'connection_quality':
        if (typeof msg.participant_id === 'number') this.setQuality(msg.participant_id, msg.quality);
        break;
      case 'hand_changed':
        if (msg.raised) this.hands.add(msg.participant_id);
        else this.hands.delete(msg.participant_id);
        this.emit('hand', { participantId: msg.participant_id, raised: !!msg.raised });
        break;
      // Anything else is from a newer server: ignored.
    }
  }

  // An offer the server refused gets no answer: roll back so negotiation can
  // continue (and retry if the server was only busy or more changes wait).
  async onError(msg) {
    const OFFER_REFUSALS = ['invalid_offer', 'server_busy', 'forbidden', 'sdp_too_large', 'too_many_tracks'];
    if (this.negotiating && OFFER_REFUSALS.includes(msg.code) && this.pc.signalingState === 'have-local-offer') {
      try { await this.pc.setLocalDescription({ type: 'rollback' }); } catch { /* already stable */ }
      this.negotiating = false;
      if (this.renegotiate || msg.code === 'server_busy') {
        this.renegotiate = false;
        setTimeout(() => this.negotiate(), 500);
      }
    }
    // Unmuting a source the host muted is refused: keep it muted here too.
    if (msg.code === 'forbidden' && this.pendingUnmute) {
      msg.handled = true; // said as "the host muted you", not as a bare refusal
      const l = this.local.get(this.pendingUnmute);
      if (l) { l.muted = true; l.track.enabled = false; this.emit('muted-by-host', this.pendingUnmute); }
    }
    this.pendingUnmute = null;
  }

  addParticipant(p) {
    this.participants.set(p.participant_id, { name: p.name, role: p.role ?? null, tracks: new Map(p.tracks.map((t) => [t.track_id, t])) });
    if (p.hand_raised) this.hands.add(p.participant_id);
    this.emit('participant-joined', p);
    // `joined` carries each participant's last grade; later ones come as `connection_quality`.
    if (p.quality !== undefined) this.setQuality(p.participant_id, p.quality);
  }

  setQuality(participantId, grade) {
    const quality = QUALITIES.includes(grade) ? grade : null;
    if (quality) this.quality.set(participantId, quality);
    else this.quality.delete(participantId);
    this.emit('quality', { participantId, quality });
  }

  publishInitial() {
    const audio = this.localStream?.getAudioTracks()[0];
    const video = this.localStream?.getVideoTracks()[0];
    if (audio) this.addLocal('microphone', audio);
    if (video) this.addLocal('camera', video);
  }

  // The camera goes out as simulcast when the server gave layers; a screen
  // share and the microphone as one encoding.
  addLocal(source, track) {
    const init = { direction: 'sendonly', streams: [] };
    const encodings = source === 'camera' ? sendEncodings(this.layers) : null;
    let transceiver = null;
    if (encodings) {
      try { transceiver = this.pc.addTransceiver(track, { ...init, sendEncodings: encodings }); } catch { /* one layer, below */ }
    }
    transceiver ??= this.pc.addTransceiver(track, init);
    if (track.kind === 'audio') preferServerCodecs(transceiver, 'audio');
    this.local.set(source, { transceiver, track, muted: !track.enabled });
    return transceiver;
  }

  // `publish_layers`: switch encodings of one of our tracks on or off. Changes
  // to one sender are applied in order, each on the parameters the last left.
  onPublishLayers(msg) {
    const l = [...this.local.values()].find((x) => x.trackId !== undefined && x.trackId === msg.track_id);
    if (!l || !Array.isArray(msg.active)) return;
    l.activeLayers = msg.active;
    const sender = l.transceiver.sender;
    l.layerChange = (l.layerChange ?? Promise.resolve())
      .then(() => setActiveLayers(sender, this.layers, msg.active))
      .catch((e) => console.warn('publish_layers not applied:', e));
  }

  // How the page shows a subscribed video track: { paused, quality, pinned }.
  setView(trackId, view) {
    if (this.remote.get(trackId)?.info.kind === 'video') this.views.want(trackId, view);
  }

  subscribe(participantId, info) {
    if (this.remote.has(info.track_id)) return;
    // Reuse an idle receive m-line of the same kind before adding a new one.
    const used = new Set([...this.remote.values()].map((r) => r.transceiver));
    const localT = new Set([...this.local.values()].map((l) => l.transceiver));
    let transceiver = this.pc.getTransceivers().find((t) =>
      !used.has(t) && !localT.has(t) && t.direction === 'inactive' && t.receiver.track.kind === info.kind && !t.stopped);
    if (transceiver) transceiver.direction = 'recvonly';
    else {
      transceiver = this.pc.addTransceiver(info.kind, { direction: 'recvonly' });
      preferServerCodecs(transceiver, info.kind);
    }
    const r = { participantId, info, transceiver };
    this.remote.set(info.track_id, r);
    this.emit('remote-added', r);
  }

  unsubscribe(trackId) {
    const r = this.remote.get(trackId);
    if (!r) return;
    this.remote.delete(trackId);
    this.views.forget(trackId);
    r.transceiver.direction = 'inactive';
    this.emit('remote-removed', r);
  }

  // True when an offer would carry no m-line worth sending: nothing was ever
  // negotiated and no transceiver wants to send or receive. A viewer (or a
  // participant without camera and microphone) alone in a room is in this
  // state; an offer without m-lines would leave the connection unusable, so
  // negotiation waits until the first track to receive (or send) appears.
  nothingToOffer() {
    return !this.pc.getTransceivers().some((t) => !t.stopped && (t.mid !== null || t.direction !== 'inactive'));
  }

  // One offer in flight at a time; changes meanwhile trigger one more round.
  async negotiate() {
    if (this.negotiating) { this.renegotiate = true; return; }
    if (this.pc.signalingState === 'closed' || this.nothingToOffer()) return;
    this.negotiating = true;
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      // The lists must say what this SDP says. Messages handled while the
      // offer was made (a track unpublished, another one reusing its idle
      // m-line, a new subscription) changed the transceivers after the SDP
      // was taken: an entry whose m-line does not send or receive its kind in
      // the SDP would be refused (invalid_offer). Such entries wait for the
      // next round, which the change already asked for.
      const lines = mediaLines(this.pc.localDescription.sdp);
      const fits = (mid, kind, dir) => {
        const l = lines.get(mid);
        // Port 0 is a stopped m-line, unless it is bundle-only (Firefox offers
        // every m-line after the first so under max-bundle).
        const live = l && (l.port !== '0' || l.bundleOnly);
        return !!live && l.kind === kind && (l.direction === dir || l.direction === 'sendrecv');
      };
      const publish = [];
      for (const [source, l] of this.local) {
        const mid = l.transceiver.mid;
        if (!mid || l.transceiver.direction !== 'sendonly') continue;
        if (fits(mid, l.track.kind, 'sendonly')) publish.push({ mid, source, muted: l.muted });
        else this.renegotiate = true;
      }
      const subscribe = [];
      for (const [trackId, r] of this.remote) {
        const mid = r.transceiver.mid;
        if (!mid) continue;
        if (fits(mid, r.info.kind, 'recvonly')) subscribe.push({ mid, track_id: trackId });
        else this.renegotiate = true;
      }
      this.offeredSubscribe = subscribe.map((s) => s.track_id);
      this.sig.send({ type: 'offer', sdp: this.pc.localDescription.sdp, publish, subscribe });
    } catch (e) {
      this.negotiating = false;
      this.emit('server-error', { code: 'internal', message: String(e) });
    }
  }

  async onAnswer(msg) {
    for (const p of msg.published || []) {
      for (const l of this.local.values()) if (l.transceiver.mid === p.mid) l.trackId = p.track_id;
    }
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      // Those subscriptions exist now: their updates may go out.
      this.views.subscribed(this.offeredSubscribe.filter((id) => this.remote.get(id)?.info.kind === 'video'));
    } catch (e) {
      // Back to the last agreed state, or every later offer would fail too.
      try { await this.pc.setLocalDescription({ type: 'rollback' }); } catch { /* already stable */ }
      this.emit('server-error', { code: 'invalid_offer', message: String(e) });
    }
    this.negotiating = false;
    if (this.renegotiate) { this.renegotiate = false; this.negotiate(); }
  }

  // Host only: end the meeting for everyone (the server closes every
  // connection, this one too, with `meeting_ended`).
  endMeeting() {
    this.sig.send({ type: 'end_meeting' });
  }

  // Ask for the floor, or stop asking.
  raiseHand(raised) {
    this.sig.send({ type: 'hand', raised: !!raised });
  }

  // Host only (the server refuses others with `forbidden`).
  moderate(action, participantId, source = undefined) {
    const msg = { type: 'moderate', action, participant_id: participantId };
    if (source) msg.source = source;
    this.sig.send(msg);
  }

  setMuted(source, muted) {
    const l = this.local.get(source);
    if (!l) return;
    this.pendingUnmute = muted ? null : source;
    l.muted = muted;
    l.track.enabled = !muted;
    this.sig.send({ type: 'mute', source, muted });
  }

  // Publish a camera or microphone that was not there at join (turned on
  // later, or allowed after a "try again").
  publishSource(source, track) {
    if (this.local.has(source) || this.role === 'viewer') return false;
    this.addLocal(source, track);
    this.negotiate();
    return true;
  }

  // Another device for a published source (a headset, a document camera):
  // the same m-line and track id, no renegotiation.
  async replaceSource(source, track) {
    const l = this.local.get(source);
    if (!l) return false;
    track.enabled = !l.muted;
    await l.transceiver.sender.replaceTrack(track);
    l.track = track;
    return true;
  }

  async startScreenShare(track) {
    if (this.local.has('screen')) return;
    const existing = this.pc.getTransceivers().find((t) => t.direction === 'inactive' && t.sender.track === null && t.receiver.track.kind === 'video' && ![...this.remote.values()].some((r) => r.transceiver === t) && ![...this.local.values()].some((l) => l.transceiver === t));
    if (existing) {
      await existing.sender.replaceTrack(track);
      existing.direction = 'sendonly';
      this.local.set('screen', { transceiver: existing, track, muted: false });
    } else {
      this.addLocal('screen', track);
    }
    track.addEventListener('ended', () => this.stopScreenShare());
    this.negotiate();
  }

  async stopScreenShare() {
    const l = this.local.get('screen');
    if (!l) return;
    this.local.delete('screen');
    l.track.stop();
    await l.transceiver.sender.replaceTrack(null);
    l.transceiver.direction = 'inactive';
    this.negotiate();
  }

  leave() {
    this.sig.send({ type: 'leave' });
    this.close();
    this.stopLocalMedia();
  }

  // The meeting is over for this page: camera, microphone and any screen share off.
  stopLocalMedia() {
    for (const l of this.local.values()) l.track.stop();
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
  }

  // Drop the connection but keep the local camera and microphone, for a reconnect.
  close() {
    this.closedByUs = true;
    this.views.stop();
    this.sig.close();
    this.pc.close();
  }
}
