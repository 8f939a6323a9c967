//! Seeing a subscription that receives nothing: the subscriber's RTCP receiver
//! reports stop advancing (or report 100 % loss) while we keep sending to it.
//! Fed once per stats interval (1 s) per down-track, never per packet.
//!
//! Judged by time, not by a count of reports: str0m's stats repeat the last
//! receiver report until a new one arrives, and browsers report audio only
//! every 5 s or so (randomised up to 7.5 s), video about every second.

use std::time::{Duration, Instant};

/// No progress for this long while we send: stalled.
pub const VIDEO_STALL_AFTER: Duration = Duration::from_secs(4);
/// For audio, beyond the longest receiver-report interval browsers use.
pub const AUDIO_STALL_AFTER: Duration = Duration::from_secs(16);

#[derive(Debug, Clone)]
pub struct StallWatch {
    after: Duration,
    last_sent: u64,
    last_remote_max: Option<u64>,
    /// Since when we have been sending without the receiver reporting progress.
    silent_since: Option<Instant>,
    stalled: bool,
    /// Times this subscription has stalled.
    stalls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallChange {
    Unchanged,
    /// It just stalled; `times` counts this stall too.
    Stalled {
        times: u32,
    },
    Recovered,
}

impl StallWatch {
    pub fn new(after: Duration) -> Self {
        Self {
            after,
            last_sent: 0,
            last_remote_max: None,
            silent_since: None,
            stalled: false,
            stalls: 0,
        }
    }

    /// One stats report at `now`: packets sent so far on the stream, the
    /// highest sequence number the receiver reports, and its loss fraction.
    pub fn observe(
        &mut self,
        now: Instant,
        sent: u64,
        remote_max: Option<u64>,
        loss: Option<f32>,
    ) -> StallChange {
        let sending = sent > self.last_sent;
        self.last_sent = sent;
        let Some(max) = remote_max else {
            // No receiver report yet: nothing to judge.
            return StallChange::Unchanged;
        };
        let progressed = self.last_remote_max != Some(max);
        self.last_remote_max = Some(max);
        let all_lost = loss.is_some_and(|l| l >= 1.0);
        if progressed && !all_lost {
            self.silent_since = None;
            if self.stalled {
                self.stalled = false;
                return StallChange::Recovered;
            }
            return StallChange::Unchanged;
        }
        if !sending {
            return StallChange::Unchanged;
        }
        let since = *self.silent_since.get_or_insert(now);
        if !self.stalled && now.saturating_duration_since(since) >= self.after {
            self.stalled = true;
            self.stalls += 1;
            return StallChange::Stalled { times: self.stalls };
        }
        StallChange::Unchanged
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn no_progress_while_sending_stalls_after_the_time_and_recovers() {
        let t = Instant::now();
        let mut w = StallWatch::new(VIDEO_STALL_AFTER);
        assert_eq!(w.observe(t, 100, Some(1000), None), StallChange::Unchanged);
        for i in 1..=4 {
            assert_eq!(
                w.observe(t + S * i, 100 + 100 * i as u64, Some(1000), None),
                StallChange::Unchanged
            );
        }
        assert_eq!(
            w.observe(t + S * 5, 600, Some(1000), None),
            StallChange::Stalled { times: 1 }
        );
        assert!(w.is_stalled());
        assert_eq!(
            w.observe(t + S * 6, 700, Some(1000), None),
            StallChange::Unchanged,
            "counted once"
        );
        assert_eq!(
            w.observe(t + S * 7, 800, Some(1100), Some(0.0)),
            StallChange::Recovered
        );
        for i in 8..=12 {
            w.observe(t + S * i, 900 + i as u64, Some(1100), None);
        }
        assert_eq!(w.stalls, 2);
    }

    #[test]
    fn audio_reports_every_five_seconds_are_not_a_stall() {
        let t = Instant::now();
        let mut w = StallWatch::new(AUDIO_STALL_AFTER);
        // Stats every second; the receiver's report moves every 5 s.
        for i in 0..60u64 {
            let max = 1000 + (i / 5) * 250;
            let change = w.observe(t + S * i as u32, 50 * (i + 1), Some(max), None);
            assert_eq!(change, StallChange::Unchanged, "second {i}");
        }
    }

    #[test]
    fn silence_on_our_side_is_not_a_stall() {
        let t = Instant::now();
        let mut w = StallWatch::new(VIDEO_STALL_AFTER);
        for i in 0..10 {
            assert_eq!(
                w.observe(t + S * i, 100, Some(50), None),
                StallChange::Unchanged
            );
        }
        assert!(!w.is_stalled());
    }

    #[test]
    fn total_loss_stalls_even_if_the_number_moves() {
        let t = Instant::now();
        let mut w = StallWatch::new(VIDEO_STALL_AFTER);
        let mut last = StallChange::Unchanged;
        for i in 0..=4u32 {
            last = w.observe(
                t + S * i,
                100 * (u64::from(i) + 1),
                Some(1000 + u64::from(i)),
                Some(1.0),
            );
        }
        assert_eq!(last, StallChange::Stalled { times: 1 });
    }

    #[test]
    fn no_reports_at_all_are_not_judged() {
        let t = Instant::now();
        let mut w = StallWatch::new(VIDEO_STALL_AFTER);
        for i in 0..10 {
            assert_eq!(
                w.observe(t + S * i, 100 * u64::from(i), None, None),
                StallChange::Unchanged
            );
        }
    }
}
