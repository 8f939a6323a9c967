// A non-browser client of the documented protocol (docs/signaling-protocol.md)
// on native libwebrtc outside Chrome: @roamhq/wrtc in Node. It publishes
// frames it draws itself (RTCVideoSource, RTCAudioSource) and counts what it
// receives (RTCVideoSink, RTCAudioSink), per subscribed track.
import { createRequire } from 'node:module';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
export const wrtc = require('@roamhq/wrtc');
const { RTCVideoSource, RTCAudioSource, RTCVideoSink, RTCAudioSink } = wrtc.nonstandard;

/// A moving test picture (I420) and a 440 Hz tone, pushed into a video and an
/// audio source until `stop()`.
export function syntheticMedia({ width = 640, height = 360, fps = 15 } = {}) {
  const video = new RTCVideoSource();
  const audio = new RTCAudioSource();
  const data = new Uint8ClampedArray(width * height * 1.5);
  let n = 0;
  const videoTimer = setInterval(() => {
    // A bar that moves across a gradient, so every frame differs.
    const bar = (n * 8) % width;
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) data[row + x] = Math.abs(x - bar) < 16 ? 235 : (x + y + n) & 0xff;
    }
    data.fill(128, width * height);
    video.onFrame({ width, height, data });
    n++;
  }, Math.round(1000 / fps));
  const samples = new Int16Array(480);
  let t = 0;
  const audioTimer = setInterval(() => {
    for (let i = 0; i < samples.length; i++, t++) samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * t) / 48000));
    audio.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
  }, 10);
  return {
    video,
    audio,
    stop() { clearInterval(videoTimer); clearInterval(audioTimer); },
  };
}

export class WrtcClient {
  /// `invite`: an invite link (https://host/?room=R&token=T).
  constructor(invite, name) {
    const url = new URL(invite);
    this.room = url.searchParams.get('room');
    this.token = url.searchParams.get('token');
    this.wsUrl = `wss://${url.host}/ws`;
    this.name = name;
    this.pc = new wrtc.RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.local = new Map();   // source -> { transceiver, trackId }
    this.remote = new Map();  // trackId -> { info, participantId, transceiver, frames, samples, energy, sink, height }
    this.participants = new Map();
    this.negotiating = false;
    this.again = false;
    this.errors = [];
    this.messages = [];
    this.metrics = { wsOpenAt: null, firstFrameAt: null };
    this.sinks = [];
  }

  /// Open the websocket and join; resolves on `joined`.
  join() {
    this.ws = new WebSocket(this.wsUrl, { rejectUnauthorized: false });
    this.ws.on('open', () => {
      this.metrics.wsOpenAt = performance.now();
      this.send({ type: 'join', v: 1, room: this.room, name: this.name, token: this.token });
    });
    this.ws.on('message', (d) => this.onMessage(JSON.parse(String(d))));
    return new Promise((resolve, reject) => {
      this.onJoined = resolve;
      this.ws.on('error', reject);
      this.ws.on('close', () => reject(new Error('websocket closed before joined')));
    });
  }

  send(msg) { this.ws.send(JSON.stringify(msg)); }

  onMessage(msg) {
    this.messages.push(msg.type);
    switch (msg.type) {
      case 'joined':
        this.participantId = msg.participant_id;
        this.simulcast = msg.simulcast;
        for (const p of msg.participants) {
          this.participants.set(p.participant_id, p);
          for (const t of p.tracks) this.subscribe(p.participant_id, t);
        }
        this.onJoined(msg);
        break;
      case 'participant_joined':
        this.participants.set(msg.participant.participant_id, msg.participant);
        for (const t of msg.participant.tracks) this.subscribe(msg.participant.participant_id, t);
        this.negotiate();
        break;
      case 'participant_left':
        for (const [id, r] of this.remote) if (r.participantId === msg.participant_id) this.unsubscribe(id);
        this.participants.delete(msg.participant_id);
        this.negotiate();
        break;
      case 'track_published':
        this.subscribe(msg.participant_id, msg.track);
        this.negotiate();
        break;
      case 'track_unpublished':
        this.unsubscribe(msg.track_id);
        this.negotiate();
        break;
      case 'answer':
        this.onAnswer(msg);
        break;
      case 'renegotiate':
        this.negotiate();
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'error':
        this.errors.push(msg);
        if (this.negotiating && this.pc.signalingState === 'have-local-offer') {
          this.pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
          this.negotiating = false;
        }
        break;
      // publish_layers: this client publishes one layer unless asked to
      // (see publish()); active_speakers and the rest: nothing to do.
    }
  }

  /// Publish a track as `source`, with `sendEncodings` for simulcast.
  publish(source, track, sendEncodings = undefined) {
    const init = { direction: 'sendonly', streams: [] };
    if (sendEncodings) init.sendEncodings = sendEncodings;
    const transceiver = this.pc.addTransceiver(track, init);
    this.local.set(source, { transceiver, trackId: null });
    return transceiver;
  }

  subscribe(participantId, info) {
    if (this.remote.has(info.track_id)) return;
    const transceiver = this.pc.addTransceiver(info.kind, { direction: 'recvonly' });
    const r = { info, participantId, transceiver, frames: 0, samples: 0, energy: 0, height: 0 };
    const track = transceiver.receiver.track;
    if (info.kind === 'video') {
      const sink = new RTCVideoSink(track);
      sink.onframe = ({ frame }) => {
        r.frames++;
        r.height = frame.height;
        if (this.metrics.firstFrameAt === null) this.metrics.firstFrameAt = performance.now();
      };
      r.sink = sink;
    } else {
      const sink = new RTCAudioSink(track);
      sink.ondata = ({ samples }) => {
        r.samples += samples.length;
        for (let i = 0; i < samples.length; i += 16) r.energy += Math.abs(samples[i]);
      };
      r.sink = sink;
    }
    this.sinks.push(r.sink);
    this.remote.set(info.track_id, r);
  }

  unsubscribe(trackId) {
    const r = this.remote.get(trackId);
    if (!r) return;
    this.remote.delete(trackId);
    r.transceiver.direction = 'inactive';
  }

  /// One offer in flight; changes meanwhile make one more round.
  async negotiate() {
    if (this.negotiating) { this.again = true; return; }
    this.negotiating = true;
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      const publish = [];
      for (const [source, l] of this.local) {
        if (l.transceiver.mid !== null && l.transceiver.direction === 'sendonly') publish.push({ mid: l.transceiver.mid, source });
      }
      const subscribe = [];
      for (const [trackId, r] of this.remote) if (r.transceiver.mid !== null) subscribe.push({ mid: r.transceiver.mid, track_id: trackId });
      this.send({ type: 'offer', sdp: this.pc.localDescription.sdp, publish, subscribe });
    } catch (e) {
      this.negotiating = false;
      this.errors.push({ code: 'client', message: String(e) });
    }
  }

  async onAnswer(msg) {
    for (const p of msg.published || []) {
      for (const l of this.local.values()) if (l.transceiver.mid === p.mid) l.trackId = p.track_id;
    }
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    } catch (e) {
      this.errors.push({ code: 'answer', message: String(e) });
    }
    this.negotiating = false;
    if (this.again) { this.again = false; this.negotiate(); }
  }

  /// Frames and samples received so far, per subscribed track.
  received() {
    return [...this.remote.entries()].map(([trackId, r]) => ({
      trackId, kind: r.info.kind, source: r.info.source, frames: r.frames, samples: r.samples, energy: r.energy, height: r.height,
    }));
  }

  close() {
    for (const s of this.sinks) s.stop();
    try { this.send({ type: 'leave' }); } catch { /* closed */ }
    this.ws?.close();
    this.pc.close();
  }
}
