//! A participant's connection quality (excellent, good, poor, lost), from what
//! the server sees on both legs: loss and round-trip time in its subscribers'
//! receiver reports, loss and jitter on what it publishes, and the downlink
//! estimate. Sans-IO: reports in with their time, a grade out.

use signaling::protocol::ConnectionQuality;
use std::time::{Duration, Instant};

/// A grade must hold this long before it is announced (a single bad report
/// is not a bad connection).
const SETTLE: Duration = Duration::from_secs(3);
/// No report from either leg for this long: lost.
const LOST_AFTER: Duration = Duration::from_secs(6);
/// Weight of a new report in the smoothed loss.
const ALPHA: f32 = 0.5;

#[derive(Debug, Clone)]
pub struct QualityWatch {
    /// Loss fractions: the worst of its down-tracks' smoothed ones (what it
    /// receives), and what we see of its publications, smoothed (uplink).
    down_loss: f32,
    up_loss: f32,
    rtt: Option<Duration>,
    /// Jitter of its publications, in seconds.
    jitter: f32,
    last_report: Option<Instant>,
    announced: Option<ConnectionQuality>,
    candidate: Option<(ConnectionQuality, Instant)>,
}

impl Default for QualityWatch {
    fn default() -> Self {
        Self {
            down_loss: 0.0,
            up_loss: 0.0,
            rtt: None,
            jitter: 0.0,
            last_report: None,
            announced: None,
            candidate: None,
        }
    }
}

impl QualityWatch {
    /// A receiver report on one of this peer's down-tracks (its loss is kept
    /// per stream and set with `down_loss`: audio, unrepaired, and video,
    /// repaired, would blur each other in one average).
    pub fn downlink(&mut self, rtt: Option<Duration>, now: Instant) {
        if rtt.is_some() {
            self.rtt = rtt;
        }
        self.last_report = Some(now);
    }

    /// The worst smoothed loss over the peer's down-tracks, before a grading.
    pub fn down_loss(&mut self, loss: f32) {
        self.down_loss = loss.clamp(0.0, 1.0);
    }

    /// Stats of one of this peer's publications.
    pub fn uplink(&mut self, loss: Option<f32>, jitter_secs: f32, now: Instant) {
        if let Some(l) = loss {
            self.up_loss += ALPHA * (l.clamp(0.0, 1.0) - self.up_loss);
        }
        self.jitter = jitter_secs;
        self.last_report = Some(now);
    }

    /// The grade now, from the smoothed figures.
    pub fn grade(&self, estimate_bps: Option<u64>, now: Instant) -> ConnectionQuality {
        let Some(last) = self.last_report else {
            return ConnectionQuality::Good; // nothing to judge yet
        };
        if now.saturating_duration_since(last) >= LOST_AFTER {
            return ConnectionQuality::Lost;
        }
        let loss = self.down_loss.max(self.up_loss);
        let rtt = self.rtt.unwrap_or_default();
        let estimate = estimate_bps.unwrap_or(u64::MAX);
        if loss >= 0.05 || rtt >= Duration::from_millis(500) || estimate < 300_000 {
            ConnectionQuality::Poor
        } else if loss >= 0.02
            || rtt >= Duration::from_millis(200)
            || self.jitter >= 0.03
            || estimate < 1_000_000
        {
            ConnectionQuality::Good
        } else {
            ConnectionQuality::Excellent
        }
    }

    /// The grade to announce, when it changed and has held for a while.
    pub fn evaluate(
        &mut self,
        estimate_bps: Option<u64>,
        now: Instant,
    ) -> Option<ConnectionQuality> {
        self.last_report?; // nothing to judge yet
        let grade = self.grade(estimate_bps, now);
        if Some(grade) == self.announced {
            self.candidate = None;
            return None;
        }
        let since = match self.candidate {
            Some((g, since)) if g == grade => since,
            _ => {
                self.candidate = Some((grade, now));
                now
            }
        };
        // The first grade, and a lost connection, need no settling.
        let settled = self.announced.is_none()
            || grade == ConnectionQuality::Lost
            || now.saturating_duration_since(since) >= SETTLE;
        if !settled {
            return None;
        }
        self.announced = Some(grade);
        self.candidate = None;
        Some(grade)
    }

    pub fn announced(&self) -> Option<ConnectionQuality> {
        self.announced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_makes_it_poor_after_it_holds_and_recovery_makes_it_good_again() {
        let mut w = QualityWatch::default();
        let mut now = Instant::now();
        let rtt = Some(Duration::from_millis(30));
        w.downlink(rtt, now);
        assert_eq!(w.evaluate(None, now), Some(ConnectionQuality::Excellent));
        for _ in 0..10 {
            now += Duration::from_secs(1);
            w.downlink(rtt, now);
            w.down_loss(0.08);
            if let Some(q) = w.evaluate(None, now) {
                assert_eq!(q, ConnectionQuality::Poor);
            }
        }
        assert_eq!(w.announced(), Some(ConnectionQuality::Poor));
        for _ in 0..15 {
            now += Duration::from_secs(1);
            w.downlink(rtt, now);
            w.down_loss(0.0);
            w.evaluate(None, now);
        }
        assert_eq!(w.announced(), Some(ConnectionQuality::Excellent));
    }

    #[test]
    fn one_bad_report_is_not_announced() {
        let mut w = QualityWatch::default();
        let mut now = Instant::now();
        w.downlink(None, now);
        w.evaluate(None, now);
        now += Duration::from_secs(1);
        w.downlink(None, now);
        w.down_loss(0.5);
        assert_eq!(w.evaluate(None, now), None);
        for _ in 0..5 {
            now += Duration::from_secs(1);
            w.downlink(None, now);
            w.down_loss(0.0);
            w.evaluate(None, now);
        }
        assert_eq!(w.announced(), Some(ConnectionQuality::Excellent));
    }

    #[test]
    fn silence_is_lost_and_a_low_estimate_is_poor() {
        let mut w = QualityWatch::default();
        let now = Instant::now();
        w.downlink(None, now);
        assert_eq!(w.grade(Some(200_000), now), ConnectionQuality::Poor);
        assert_eq!(w.grade(Some(600_000), now), ConnectionQuality::Good);
        assert_eq!(
            w.grade(None, now + Duration::from_secs(7)),
            ConnectionQuality::Lost
        );
    }
}
