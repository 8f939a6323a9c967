//! Synthetic media that looks real on the wire: VP8 frames split into
//! MTU-sized RTP payloads with payload descriptors and marker bits, and
//! Opus-sized audio packets. Every payload ends with a measurement trailer.

use std::time::{SystemTime, UNIX_EPOCH};

/// Largest RTP payload we produce: with the RTP header, extensions and the
/// SRTP tag a full video packet is about 1,200 bytes on the wire, the size
/// the T1 target is stated for.
pub const MAX_PAYLOAD: usize = 1150;

/// What every packet carries so a receiver can measure it.
/// Layout (big-endian), at the end of the payload:
/// magic "SFUL" · source u32 · counter u32 · sent_unix_us u64 · flags u8
pub const TRAILER_LEN: usize = 21;
const MAGIC: &[u8; 4] = b"SFUL";
/// The packet starts a keyframe.
pub const FLAG_KEYFRAME_START: u8 = 1;
/// Flags bits 1-2: the simulcast layer + 1 (0: not simulcast).
const LAYER_SHIFT: u8 = 1;
/// Simulcast layers count their packets in disjoint ranges of the counter
/// (layer << 28), so one track's layers never look like each other's loss.
pub const LAYER_COUNTER_SHIFT: u32 = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Which published track (unique in a run) the packet belongs to.
    pub source: u32,
    /// Per-track packet counter, independent of RTP sequence numbers, which
    /// the SFU rewrites.
    pub counter: u32,
    pub sent_unix_us: u64,
    pub flags: u8,
}

impl Trailer {
    pub fn write(&self, out: &mut [u8]) {
        let start = out.len() - TRAILER_LEN;
        let t = &mut out[start..];
        t[..4].copy_from_slice(MAGIC);
        t[4..8].copy_from_slice(&self.source.to_be_bytes());
        t[8..12].copy_from_slice(&self.counter.to_be_bytes());
        t[12..20].copy_from_slice(&self.sent_unix_us.to_be_bytes());
        t[20] = self.flags;
    }

    /// The simulcast layer (0 low, 1 mid, 2 high), if the sender marked one.
    pub fn layer(&self) -> Option<u8> {
        match (self.flags >> LAYER_SHIFT) & 3 {
            0 => None,
            l => Some(l - 1),
        }
    }

    pub fn read(payload: &[u8]) -> Option<Self> {
        let t = payload.get(payload.len().checked_sub(TRAILER_LEN)?..)?;
        if &t[..4] != MAGIC {
            return None;
        }
        Some(Self {
            source: u32::from_be_bytes(t[4..8].try_into().ok()?),
            counter: u32::from_be_bytes(t[8..12].try_into().ok()?),
            sent_unix_us: u64::from_be_bytes(t[12..20].try_into().ok()?),
            flags: t[20],
        })
    }
}

/// Microseconds since the Unix epoch. Senders and receivers share this
/// machine's clock, so one-way latency is a plain difference.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
pub struct VideoSpec {
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Seconds between periodic keyframes.
    pub keyframe_interval_s: u32,
}

/// Simulcast: the layers' bitrates (low, mid, high), kbit/s.
pub type LayerRates = [u32; 3];

/// One RTP payload ready to send.
#[derive(Debug, Clone)]
pub struct Packet {
    pub payload: Vec<u8>,
    pub marker: bool,
    /// RTP timestamp in the codec clock.
    pub rtp_ts: u32,
}

/// Produces VP8 frames as RTP payloads.
pub struct Vp8Source {
    spec: VideoSpec,
    source: u32,
    counter: u32,
    frame: u64,
    keyframe_requested: bool,
    /// Simulcast layer (0 low, 1 mid, 2 high): marks the trailer, and gives
    /// the payload descriptor a 15-bit picture ID, as a browser's layers have.
    layer: Option<u8>,
    picture_id: u16,
}

impl Vp8Source {
    pub fn new(spec: VideoSpec, source: u32) -> Self {
        Self {
            spec,
            source,
            counter: 0,
            frame: 0,
            keyframe_requested: true,
            layer: None,
            picture_id: 0,
        }
    }

    /// One layer of a simulcast camera: same source id, its own counter range
    /// and picture IDs (starting anywhere, as an encoder's do).
    pub fn layer(spec: VideoSpec, source: u32, layer: u8) -> Self {
        Self {
            counter: u32::from(layer) << LAYER_COUNTER_SHIFT,
            layer: Some(layer),
            picture_id: (source.wrapping_mul(7919) as u16).wrapping_add(u16::from(layer) * 1000)
                & 0x7fff,
            ..Self::new(spec, source)
        }
    }

    /// A frame time that passes without sending (a stopped layer), so the
    /// RTP clock keeps pace with the other layers.
    pub fn skip_frame(&mut self) {
        self.frame += 1;
    }

    pub fn id(&self) -> u32 {
        self.source
    }

    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    pub fn frame_interval(&self) -> std::time::Duration {
        std::time::Duration::from_micros(1_000_000 / u64::from(self.spec.fps.max(1)))
    }

    /// The next frame, split into packets. Keyframes are about 4× a delta
    /// frame, as with a real encoder at a steady bitrate.
    pub fn next_frame(&mut self) -> Vec<Packet> {
        let periodic = self.spec.keyframe_interval_s > 0
            && self
                .frame
                .is_multiple_of(u64::from(self.spec.fps * self.spec.keyframe_interval_s));
        let requested = std::mem::take(&mut self.keyframe_requested);
        let key = periodic || requested;
        let avg = (u64::from(self.spec.bitrate_kbps) * 1000 / 8 / u64::from(self.spec.fps.max(1)))
            as usize;
        let size = if key { avg * 4 } else { avg * 9 / 10 }.max(TRAILER_LEN + 16);
        let rtp_ts = (self.frame * 90_000 / u64::from(self.spec.fps.max(1))) as u32;
        self.frame += 1;

        // VP8 payload descriptor (RFC 7741): 1 byte, or 4 with X, I and a
        // 15-bit picture ID (M bit) for simulcast layers.
        let desc = if self.layer.is_some() { 4 } else { 1 };
        let picture_id = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        // A single layer is 640×360; simulcast layers are 1280×720 halved per layer below high.
        let (width, height) = match self.layer {
            None => (640u16, 360u16),
            Some(l) => (1280 >> (2 - l.min(2)), 720 >> (2 - l.min(2))),
        };
        let per_packet = MAX_PAYLOAD - desc - TRAILER_LEN;
        let count = size.div_ceil(per_packet);
        let now = unix_us();
        let layer_flags = self.layer.map_or(0, |l| (l + 1) << LAYER_SHIFT);
        (0..count)
            .map(|i| {
                let body = per_packet.min(size - i * per_packet);
                let mut payload = vec![0u8; desc + body + TRAILER_LEN];
                let start = if i == 0 { 0x10 } else { 0x00 };
                if desc == 4 {
                    payload[0] = 0x80 | start;
                    payload[1] = 0x80;
                    payload[2..4].copy_from_slice(&(0x8000 | picture_id).to_be_bytes());
                } else {
                    payload[0] = start;
                }
                if i == 0 {
                    // VP8 frame tag: P bit (bit 0) clear on keyframes, then the
                    // keyframe start code and the picture size.
                    let f = &mut payload[desc..];
                    f[0] = if key { 0x00 } else { 0x01 };
                    if key && f.len() > 10 {
                        f[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                        f[6..8].copy_from_slice(&width.to_le_bytes());
                        f[8..10].copy_from_slice(&height.to_le_bytes());
                    }
                }
                let flags = layer_flags
                    | if key && i == 0 {
                        FLAG_KEYFRAME_START
                    } else {
                        0
                    };
                Trailer {
                    source: self.source,
                    counter: self.counter,
                    sent_unix_us: now,
                    flags,
                }
                .write(&mut payload);
                self.counter = self.counter.wrapping_add(1);
                Packet {
                    payload,
                    marker: i + 1 == count,
                    rtp_ts,
                }
            })
            .collect()
    }
}

/// Opus-sized audio: 20 ms packets, 50 per second.
pub struct OpusSource {
    source: u32,
    counter: u32,
    bytes: usize,
}

impl OpusSource {
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

    pub fn new(source: u32, bitrate_kbps: u32) -> Self {
        Self {
            source,
            counter: 0,
            bytes: (bitrate_kbps as usize * 1000 / 8 / 50).max(TRAILER_LEN + 8),
        }
    }

    pub fn id(&self) -> u32 {
        self.source
    }

    pub fn next_packet(&mut self) -> Packet {
        let mut payload = vec![0u8; self.bytes];
        // TOC byte: config 12 (hybrid SWB 20 ms), mono, one frame.
        payload[0] = 12 << 3;
        Trailer {
            source: self.source,
            counter: self.counter,
            sent_unix_us: unix_us(),
            flags: 0,
        }
        .write(&mut payload);
        let rtp_ts = self.counter.wrapping_mul(960);
        self.counter = self.counter.wrapping_add(1);
        Packet {
            payload,
            marker: false,
            rtp_ts,
        }
    }

    /// A plausible speech level in −dBov, varying slowly.
    pub fn audio_level(&self) -> u8 {
        30 + (self.counter / 10 % 20) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_and_rejects_foreign_payloads() {
        let mut p = vec![7u8; 100];
        let t = Trailer {
            source: 9,
            counter: 123456,
            sent_unix_us: 1_700_000_000_000_000,
            flags: FLAG_KEYFRAME_START,
        };
        t.write(&mut p);
        assert_eq!(Trailer::read(&p), Some(t));
        assert_eq!(Trailer::read(&[0u8; 100]), None);
        assert_eq!(Trailer::read(&[0u8; 5]), None);
    }

    #[test]
    fn frames_fit_the_mtu_and_mark_their_last_packet() {
        let spec = VideoSpec {
            fps: 30,
            bitrate_kbps: 1500,
            keyframe_interval_s: 2,
        };
        let mut src = Vp8Source::new(spec, 1);
        let key = src.next_frame();
        let delta = src.next_frame();
        assert!(key.len() > delta.len(), "a keyframe is larger");
        for frame in [&key, &delta] {
            assert!(frame.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
            assert!(frame.last().unwrap().marker);
            assert!(frame[..frame.len() - 1].iter().all(|p| !p.marker));
            assert_eq!(frame[0].payload[0] & 0x10, 0x10, "S bit on the first");
            assert!(frame.iter().all(|p| p.rtp_ts == frame[0].rtp_ts));
        }
        assert_eq!(key[0].payload[1] & 1, 0, "keyframe P bit");
        assert_eq!(delta[0].payload[1] & 1, 1, "delta frame P bit");
        let counters: Vec<u32> = key
            .iter()
            .chain(&delta)
            .map(|p| Trailer::read(&p.payload).unwrap().counter)
            .collect();
        assert!(counters.windows(2).all(|w| w[1] == w[0] + 1));
        // ~1500 kbps at 30 fps: a delta frame is about 5.6 kB.
        let bytes: usize = delta.iter().map(|p| p.payload.len()).sum();
        assert!((5000..7000).contains(&bytes), "{bytes}");
    }

    #[test]
    fn simulcast_layers_carry_picture_ids_and_their_layer() {
        let spec = VideoSpec {
            fps: 30,
            bitrate_kbps: 150,
            keyframe_interval_s: 2,
        };
        let mut low = Vp8Source::layer(spec, 5, 0);
        let key = low.next_frame();
        let delta = low.next_frame();
        let pid = |f: &[Packet]| u16::from_be_bytes([f[0].payload[2], f[0].payload[3]]);
        for f in [&key, &delta] {
            assert_eq!(f[0].payload[0], 0x90, "X and S bits");
            assert_eq!(f[0].payload[1], 0x80, "I bit");
            assert_eq!(pid(f) & 0x8000, 0x8000, "15-bit picture ID (M bit)");
        }
        assert_eq!(pid(&delta) & 0x7fff, (pid(&key) + 1) & 0x7fff);
        assert_eq!(
            key[0].payload[4] & 1,
            0,
            "keyframe P bit after the descriptor"
        );
        assert_eq!(delta[0].payload[4] & 1, 1);
        let t = Trailer::read(&key[0].payload).unwrap();
        assert_eq!((t.source, t.layer()), (5, Some(0)));
        let high = Vp8Source::layer(spec, 5, 2).next_frame();
        let t = Trailer::read(&high[0].payload).unwrap();
        assert_eq!(t.layer(), Some(2));
        assert_eq!(t.counter >> LAYER_COUNTER_SHIFT, 2);
        let single = Vp8Source::new(spec, 5).next_frame();
        assert_eq!(Trailer::read(&single[0].payload).unwrap().layer(), None);
    }
}
