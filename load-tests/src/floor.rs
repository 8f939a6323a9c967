//! The floor: the least work any SFU must do per forwarded copy. A relay
//! thread receives each RTP packet, SRTP-protects it once per subscriber with
//! AES-128-GCM (RFC 7714, the same aws-lc-rs crypto str0m uses) and calls
//! `sendto` over loopback. No ICE, no DTLS, no RTCP, no munging, no
//! allocation per copy. The SFU's CPU per copy divided by this one is how far
//! the real loop runs from the hardware limit.

use crate::media::{OpusSource, VideoSpec, Vp8Source};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RTP_HEADER: usize = 12;
const TAG: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct FloorResult {
    pub subscribers: usize,
    pub packets_in: u64,
    pub copies: u64,
    pub received: u64,
    pub loss_percent: f64,
    pub relay_cpu_s: f64,
    pub us_per_copy: f64,
}

/// One subscriber's SRTP context: key, salt and its address.
struct Leg {
    key: LessSafeKey,
    salt: [u8; 12],
    to: SocketAddr,
}

impl Leg {
    fn new(i: usize, to: SocketAddr) -> Self {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &raw).expect("16-byte key"));
        let mut salt = [0u8; 12];
        salt[4..12].copy_from_slice(&(i as u64 * 7 + 3).to_be_bytes());
        Self { key, salt, to }
    }

    /// Protect `buf[..len]` (an RTP packet) in place and append the tag.
    /// Returns the SRTP length.
    fn protect(&self, buf: &mut [u8], len: usize) -> Option<usize> {
        if len < RTP_HEADER || len + TAG > buf.len() {
            return None;
        }
        // RFC 7714 §8.1: IV = (0x0000 ‖ SSRC ‖ ROC ‖ SEQ) XOR salt. ROC is 0 here.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&buf[8..12]);
        iv[10..12].copy_from_slice(&buf[2..4]);
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        let (header, rest) = buf.split_at_mut(RTP_HEADER);
        let payload_len = len - RTP_HEADER;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&header[..]),
                &mut rest[..payload_len],
            )
            .ok()?;
        rest[payload_len..payload_len + TAG].copy_from_slice(tag.as_ref());
        Some(len + TAG)
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Publish `video` and Opus to the relay for `duration`, fanning out to
/// `subscribers` receiving sockets, and measure the relay thread.
pub fn run(
    subscribers: usize,
    video: VideoSpec,
    duration: Duration,
) -> std::io::Result<FloorResult> {
    let relay = UdpSocket::bind("127.0.0.1:0")?;
    relay.set_read_timeout(Some(Duration::from_millis(50)))?;
    let relay_addr = relay.local_addr()?;
    let mut sinks = Vec::new();
    let mut legs = Vec::new();
    for i in 0..subscribers {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        legs.push(Leg::new(i, s.local_addr()?));
        sinks.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));

    let relay_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut inbuf = [0u8; 1500];
            let mut out = [0u8; 1600];
            let (mut packets_in, mut copies) = (0u64, 0u64);
            let cpu0 = thread_cpu();
            while !stop.load(Relaxed) {
                let Ok(n) = relay.recv(&mut inbuf) else {
                    continue;
                };
                packets_in += 1;
                for leg in &legs {
                    out[..n].copy_from_slice(&inbuf[..n]);
                    if let Some(len) = leg.protect(&mut out, n) {
                        if relay.send_to(&out[..len], leg.to).is_ok() {
                            copies += 1;
                        }
                    }
                }
            }
            (packets_in, copies, thread_cpu() - cpu0)
        })
    };
    let sink_threads: Vec<_> = sinks
        .into_iter()
        .map(|s| {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1600];
                while !stop.load(Relaxed) {
                    if s.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();

    // The publisher: the same frames and audio as a webrtc-rs publisher, as plain RTP.
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let mut vp8 = Vp8Source::new(video, 0);
    let mut opus = OpusSource::new(1, 32);
    let start = Instant::now();
    let (mut next_video, mut next_audio) = (start, start);
    let (mut vseq, mut aseq) = (0u16, 0u16);
    let mut buf = [0u8; 1500];
    while start.elapsed() < duration {
        let now = Instant::now();
        if now >= next_video {
            for p in vp8.next_frame() {
                let n = rtp(&mut buf, 96, vseq, p.rtp_ts, 0x1111, p.marker, &p.payload);
                vseq = vseq.wrapping_add(1);
                let _ = sender.send_to(&buf[..n], relay_addr);
            }
            next_video += vp8.frame_interval();
        }
        if now >= next_audio {
            let p = opus.next_packet();
            let n = rtp(&mut buf, 111, aseq, p.rtp_ts, 0x2222, false, &p.payload);
            aseq = aseq.wrapping_add(1);
            let _ = sender.send_to(&buf[..n], relay_addr);
            next_audio += OpusSource::INTERVAL;
        }
        let wake = next_video.min(next_audio);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    // Let the last copies land, then stop everyone.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Relaxed);
    let (packets_in, copies, cpu) = relay_thread.join().expect("relay thread");
    for t in sink_threads {
        let _ = t.join();
    }
    let received = received.load(Relaxed);
    Ok(FloorResult {
        subscribers,
        packets_in,
        copies,
        received,
        loss_percent: if copies == 0 {
            0.0
        } else {
            100.0 * (copies.saturating_sub(received)) as f64 / copies as f64
        },
        relay_cpu_s: cpu.as_secs_f64(),
        us_per_copy: if copies == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / copies as f64
        },
    })
}

fn rtp(
    buf: &mut [u8],
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: &[u8],
) -> usize {
    buf[0] = 0x80;
    buf[1] = pt | if marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let n = RTP_HEADER + payload.len();
    buf[RTP_HEADER..n].copy_from_slice(payload);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_encrypts_payload_and_authenticates_header() {
        let leg = Leg::new(0, "127.0.0.1:9".parse().unwrap());
        let mut buf = [0u8; 200];
        let n = rtp(&mut buf, 96, 7, 1000, 42, true, &[5u8; 100]);
        let plain = buf;
        let len = leg.protect(&mut buf, n).unwrap();
        assert_eq!(len, n + TAG);
        assert_eq!(buf[..RTP_HEADER], plain[..RTP_HEADER], "header stays clear");
        assert_ne!(
            buf[RTP_HEADER..n],
            plain[RTP_HEADER..n],
            "payload is encrypted"
        );
        // Decrypting with the same IV and AAD gives the payload back.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&42u32.to_be_bytes());
        iv[10..12].copy_from_slice(&7u16.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(leg.salt) {
            *b ^= s;
        }
        let (header, rest) = buf.split_at_mut(RTP_HEADER);
        let opened = leg
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&header[..]),
                &mut rest[..len - RTP_HEADER],
            )
            .unwrap();
        assert_eq!(opened, &[5u8; 100][..]);
    }
}
