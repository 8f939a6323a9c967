//! Keyframe request throttle, one per published video track.
//!
//! Subscribers' PLI/FIR and new subscriptions all want a keyframe from the
//! same publisher. Upstream, at most one request goes out per interval; a
//! request arriving inside the interval is remembered and sent when it ends.

use std::time::{Duration, Instant};

/// Default spacing between upstream requests (DESIGN: 300–500 ms).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeKind {
    Pli,
    Fir,
}

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: Option<KeyframeKind>,
}

impl KeyframeThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: None,
        }
    }

    /// Someone wants a keyframe. Returns the request to send upstream now, if any.
    pub fn request(&mut self, kind: KeyframeKind, now: Instant) -> Option<KeyframeKind> {
        // FIR is the stronger request; never downgrade a pending one.
        self.pending = Some(match (self.pending, kind) {
            (Some(KeyframeKind::Fir), _) | (_, KeyframeKind::Fir) => KeyframeKind::Fir,
            _ => KeyframeKind::Pli,
        });
        self.poll(now)
    }

    /// A pending request whose interval has passed.
    pub fn poll(&mut self, now: Instant) -> Option<KeyframeKind> {
        let due = self
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if due {
            if let Some(kind) = self.pending.take() {
                self.last_sent = Some(now);
                return Some(kind);
            }
        }
        None
    }

    /// When `poll` will next have something to send.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending?;
        Some(
            self.last_sent
                .map_or_else(Instant::now, |t| t + self.interval),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_goes_out_at_once() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(DEFAULT_INTERVAL);
        assert_eq!(k.request(KeyframeKind::Pli, t), Some(KeyframeKind::Pli));
        assert_eq!(k.deadline(), None);
    }

    #[test]
    fn requests_inside_the_interval_collapse_into_one() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(DEFAULT_INTERVAL);
        k.request(KeyframeKind::Pli, t);
        for i in 1..20 {
            assert_eq!(
                k.request(KeyframeKind::Pli, t + Duration::from_millis(i * 10)),
                None
            );
        }
        assert_eq!(k.deadline(), Some(t + DEFAULT_INTERVAL));
        assert_eq!(k.poll(t + Duration::from_millis(399)), None);
        assert_eq!(k.poll(t + DEFAULT_INTERVAL), Some(KeyframeKind::Pli));
        assert_eq!(
            k.poll(t + DEFAULT_INTERVAL * 3),
            None,
            "nothing pending after it was sent"
        );
    }

    #[test]
    fn fir_wins_over_pli() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(DEFAULT_INTERVAL);
        k.request(KeyframeKind::Pli, t);
        k.request(KeyframeKind::Fir, t + Duration::from_millis(1));
        k.request(KeyframeKind::Pli, t + Duration::from_millis(2));
        assert_eq!(k.poll(t + DEFAULT_INTERVAL), Some(KeyframeKind::Fir));
    }

    #[test]
    fn at_most_one_request_per_interval_over_a_storm() {
        let t = Instant::now();
        let mut k = KeyframeThrottle::new(DEFAULT_INTERVAL);
        let mut sent = 0;
        // 100 requests per second for 10 seconds.
        for ms in (0..10_000).step_by(10) {
            let now = t + Duration::from_millis(ms);
            if k.request(KeyframeKind::Pli, now).is_some() {
                sent += 1;
            }
        }
        assert_eq!(sent, 25);
    }
}
