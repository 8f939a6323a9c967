//! Keyframe requests, one state machine per published video track.
//!
//! Subscribers' PLI/FIR, new subscriptions and subscribers that lost their
//! place all want a keyframe from the same publisher. A request stays pending
//! until a keyframe actually arrives (compare mediasoup's
//! KeyFrameRequestManager):
//! - at most one request goes upstream per `interval`; one arriving inside the
//!   interval is remembered and sent when it ends;
//! - while a sent request waits for its keyframe, more requests add nothing;
//! - if no keyframe arrives within `retry_after`, the request is sent once
//!   more, then given up (a subscriber that still lacks a picture asks again);
//! - a request that could not be sent (the publisher is not connected yet)
//!   stays pending and goes out on a later poll, instead of using up a slot.

use std::time::{Duration, Instant};

/// Default spacing between upstream requests (DESIGN: 300–500 ms).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(400);
/// How long a sent request waits for its keyframe before it is sent again.
pub const RETRY_AFTER: Duration = Duration::from_millis(800);
/// Re-sends after the first request, before giving up.
const RETRIES: u8 = 1;
/// How soon a request that could not be sent (publisher not connected yet) is tried again.
pub const UNSENT_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeKind {
    Pli,
    Fir,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: KeyframeKind,
    /// When the request last went upstream; `None` until it has.
    sent_at: Option<Instant>,
    retries: u8,
}

#[derive(Debug, Clone)]
pub struct KeyframeRequests {
    interval: Duration,
    retry_after: Duration,
    last_sent: Option<Instant>,
    /// `last_sent` before the latest send, restored if that send did not happen.
    sent_before: Option<Instant>,
    /// An unsent request is not tried again before this.
    unsent_until: Option<Instant>,
    pending: Option<Pending>,
}

impl KeyframeRequests {
    pub fn new(interval: Duration, retry_after: Duration) -> Self {
        Self {
            interval,
            retry_after,
            last_sent: None,
            sent_before: None,
            unsent_until: None,
            pending: None,
        }
    }

    /// Someone wants a keyframe. Returns the request to send upstream now, if any.
    pub fn request(&mut self, kind: KeyframeKind, now: Instant) -> Option<KeyframeKind> {
        match &mut self.pending {
            Some(p) => {
                // FIR is the stronger request; never downgrade a pending one.
                if kind == KeyframeKind::Fir {
                    p.kind = KeyframeKind::Fir;
                }
            }
            None => {
                self.pending = Some(Pending {
                    kind,
                    sent_at: None,
                    retries: 0,
                })
            }
        }
        self.poll(now)
    }

    /// What is due now: a throttled first request, or a retry.
    pub fn poll(&mut self, now: Instant) -> Option<KeyframeKind> {
        let p = self.pending.as_mut()?;
        match p.sent_at {
            None => {
                let free = self
                    .last_sent
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
                    && self.unsent_until.is_none_or(|t| now >= t);
                if !free {
                    return None;
                }
            }
            Some(at) => {
                if now.saturating_duration_since(at) < self.retry_after {
                    return None;
                }
                if p.retries >= RETRIES {
                    self.pending = None;
                    return None;
                }
                p.retries += 1;
            }
        }
        p.sent_at = Some(now);
        self.sent_before = self.last_sent;
        self.last_sent = Some(now);
        Some(p.kind)
    }

    /// The request returned by `request`/`poll` could not be sent (the
    /// publisher is not connected yet): it used up no slot, and is tried
    /// again shortly.
    pub fn not_sent(&mut self, now: Instant) {
        if let Some(p) = &mut self.pending {
            p.sent_at = None;
            self.last_sent = self.sent_before;
            self.unsent_until = Some(now + UNSENT_RETRY);
        }
    }

    /// A keyframe arrived from the publisher: nothing is pending any more.
    pub fn keyframe_arrived(&mut self) {
        self.pending = None;
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// When `poll` will next have something to do.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        let p = self.pending?;
        Some(match p.sent_at {
            Some(at) => at + self.retry_after,
            None => {
                let throttle = self.last_sent.map_or(now, |t| t + self.interval);
                throttle.max(self.unsent_until.unwrap_or(now))
            }
        })
    }
}

impl Default for KeyframeRequests {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL, RETRY_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> KeyframeRequests {
        KeyframeRequests::default()
    }

    #[test]
    fn first_request_goes_out_at_once_and_waits_for_its_keyframe() {
        let t = Instant::now();
        let mut k = k();
        assert_eq!(k.request(KeyframeKind::Pli, t), Some(KeyframeKind::Pli));
        assert_eq!(k.deadline(t), Some(t + RETRY_AFTER));
        k.keyframe_arrived();
        assert_eq!(k.deadline(t), None);
        assert!(!k.is_pending());
    }

    #[test]
    fn requests_while_one_is_on_its_way_add_nothing() {
        let t = Instant::now();
        let mut k = k();
        k.request(KeyframeKind::Pli, t);
        for i in 1..20 {
            let now = t + Duration::from_millis(i * 10);
            assert_eq!(k.request(KeyframeKind::Pli, now), None);
        }
    }

    #[test]
    fn a_lost_keyframe_is_asked_for_once_more_then_given_up() {
        let t = Instant::now();
        let mut k = k();
        k.request(KeyframeKind::Pli, t);
        assert_eq!(k.poll(t + RETRY_AFTER - Duration::from_millis(1)), None);
        assert_eq!(k.poll(t + RETRY_AFTER), Some(KeyframeKind::Pli));
        assert_eq!(k.poll(t + RETRY_AFTER * 2), None, "one retry only");
        assert!(!k.is_pending());
        // A later request starts afresh.
        let later = t + RETRY_AFTER * 3;
        assert_eq!(k.request(KeyframeKind::Pli, later), Some(KeyframeKind::Pli));
    }

    #[test]
    fn after_a_keyframe_the_next_request_still_respects_the_interval() {
        let t = Instant::now();
        let mut k = k();
        k.request(KeyframeKind::Pli, t);
        k.keyframe_arrived();
        let soon = t + Duration::from_millis(100);
        assert_eq!(k.request(KeyframeKind::Pli, soon), None);
        assert_eq!(k.deadline(t), Some(t + DEFAULT_INTERVAL));
        assert_eq!(k.poll(t + DEFAULT_INTERVAL), Some(KeyframeKind::Pli));
    }

    #[test]
    fn a_request_that_could_not_be_sent_stays_pending() {
        let t = Instant::now();
        let mut k = k();
        assert!(k.request(KeyframeKind::Pli, t).is_some());
        k.not_sent(t);
        assert!(k.is_pending());
        assert_eq!(k.deadline(t), Some(t + UNSENT_RETRY));
        assert_eq!(k.poll(t + Duration::from_millis(10)), None, "not at once");
        let later = t + UNSENT_RETRY;
        assert_eq!(
            k.poll(later),
            Some(KeyframeKind::Pli),
            "and no slot was used up"
        );
        assert_eq!(k.deadline(later), Some(later + RETRY_AFTER));
    }

    #[test]
    fn fir_wins_over_pli() {
        let t = Instant::now();
        let mut k = k();
        k.request(KeyframeKind::Pli, t);
        k.keyframe_arrived();
        k.request(KeyframeKind::Pli, t + Duration::from_millis(1));
        k.request(KeyframeKind::Fir, t + Duration::from_millis(2));
        k.request(KeyframeKind::Pli, t + Duration::from_millis(3));
        assert_eq!(k.poll(t + DEFAULT_INTERVAL), Some(KeyframeKind::Fir));
    }

    #[test]
    fn at_most_one_request_per_interval_over_a_storm() {
        let t = Instant::now();
        let mut k = k();
        let mut sent = 0;
        // 100 requests per second for 10 seconds, each answered by a keyframe
        // 50 ms after a request went out.
        let mut arrives: Option<Instant> = None;
        for ms in (0..10_000).step_by(10) {
            let now = t + Duration::from_millis(ms);
            if arrives.is_some_and(|a| now >= a) {
                k.keyframe_arrived();
                arrives = None;
            }
            let out = k.request(KeyframeKind::Pli, now).or_else(|| k.poll(now));
            if out.is_some() {
                sent += 1;
                arrives = Some(now + Duration::from_millis(50));
            }
        }
        assert_eq!(sent, 25);
    }
}
