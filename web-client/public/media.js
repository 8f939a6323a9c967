// Camera and microphone: each asked for on its own, so a blocked camera still
// leaves a working microphone (and the other way round); each failure named
// (denied, missing, busy) for a lasting message with "try again".

const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };

// Why getUserMedia failed, as the message keys say it.
export function failureKind(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
    case 'PermissionDeniedError':
      return 'denied';
    case 'NotFoundError':
    case 'OverconstrainedError':
    case 'DevicesNotFoundError':
      return 'missing';
    case 'NotReadableError':
    case 'AbortError':
    case 'TrackStartError':
      return 'busy';
    default:
      return 'other';
  }
}

// One source: `kind` is 'camera' or 'microphone'. Resolves to { track } or
// { error: { kind, name } }; never throws.
export async function openSource(kind, deviceId = null) {
  const md = navigator.mediaDevices;
  if (!md?.getUserMedia) return { error: { kind: 'other', name: 'NoMediaDevices' } };
  const constraints = kind === 'camera'
    ? { video: deviceId ? { ...CAMERA, deviceId: { exact: deviceId } } : CAMERA }
    : { audio: deviceId ? { deviceId: { exact: deviceId } } : true };
  try {
    const stream = await md.getUserMedia(constraints);
    const track = kind === 'camera' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    for (const other of stream.getTracks()) if (other !== track) other.stop();
    if (!track) return { error: { kind: 'missing', name: 'NoTrack' } };
    return { track };
  } catch (e) {
    return { error: { kind: failureKind(e), name: e?.name || 'Error' } };
  }
}

// Cameras and microphones the browser lists (labels once permission was given).
export async function listDevices() {
  try {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      camera: all.filter((d) => d.kind === 'videoinput'),
      microphone: all.filter((d) => d.kind === 'audioinput'),
    };
  } catch {
    return { camera: [], microphone: [] };
  }
}

// A microphone level meter: calls `onLevel(0..1)` about 15 times a second
// until `stop()`.
export function levelMeter(track, onLevel) {
  let ctx;
  try {
    ctx = new AudioContext();
  } catch {
    return { stop() {} };
  }
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  src.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  ctx.resume?.().catch(() => {});
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    // About -50 dBFS to 0 dBFS onto 0..1.
    const db = 20 * Math.log10(Math.max(rms, 1e-5));
    onLevel(Math.max(0, Math.min(1, (db + 50) / 50)));
  }, 66);
  return {
    stop() {
      clearInterval(timer);
      try { src.disconnect(); } catch { /* closed */ }
      ctx.close().catch(() => {});
    },
  };
}
