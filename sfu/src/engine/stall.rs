//! Seeing a subscription that receives nothing: the subscriber's RTCP receiver
//! reports stop advancing (or report 100 % loss) while we keep sending to it.
//! Fed once per stats interval (1 s) per down-track, never per packet.

/// Reports in a row that show no progress before a subscription counts as stalled.
pub const STALL_REPORTS: u8 = 3;

#[derive(Debug, Default, Clone)]
pub struct StallWatch {
    last_sent: u64,
    last_remote_max: Option<u64>,
    bad_reports: u8,
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
    /// One stats report: packets sent so far on the stream, the highest
    /// sequence number the receiver reports, and its reported loss fraction.
    pub fn observe(
        &mut self,
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
        if sending && (!progressed || all_lost) {
            self.bad_reports = self.bad_reports.saturating_add(1);
            if self.bad_reports >= STALL_REPORTS && !self.stalled {
                self.stalled = true;
                self.stalls += 1;
                return StallChange::Stalled { times: self.stalls };
            }
        } else if progressed && !all_lost {
            self.bad_reports = 0;
            if self.stalled {
                self.stalled = false;
                return StallChange::Recovered;
            }
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

    #[test]
    fn no_progress_while_sending_stalls_after_three_reports_and_recovers() {
        let mut w = StallWatch::default();
        assert_eq!(w.observe(100, Some(1000), None), StallChange::Unchanged);
        assert_eq!(w.observe(200, Some(1000), None), StallChange::Unchanged);
        assert_eq!(w.observe(300, Some(1000), None), StallChange::Unchanged);
        assert_eq!(
            w.observe(400, Some(1000), None),
            StallChange::Stalled { times: 1 }
        );
        assert!(w.is_stalled());
        assert_eq!(
            w.observe(500, Some(1000), None),
            StallChange::Unchanged,
            "counted once"
        );
        assert_eq!(
            w.observe(600, Some(1100), Some(0.0)),
            StallChange::Recovered
        );
        for n in 0..3 {
            w.observe(700 + n, Some(1100), None);
        }
        assert_eq!(w.observe(800, Some(1100), None), StallChange::Unchanged);
        assert_eq!(w.stalls, 2);
    }

    #[test]
    fn silence_on_our_side_is_not_a_stall() {
        let mut w = StallWatch::default();
        for _ in 0..10 {
            assert_eq!(w.observe(100, Some(50), None), StallChange::Unchanged);
        }
        assert!(!w.is_stalled());
    }

    #[test]
    fn total_loss_stalls_even_if_the_number_moves() {
        let mut w = StallWatch::default();
        for i in 0..2 {
            assert_eq!(
                w.observe(100 * (i + 1), Some(1000 + i), Some(1.0)),
                StallChange::Unchanged
            );
        }
        assert_eq!(
            w.observe(300, Some(1002), Some(1.0)),
            StallChange::Stalled { times: 1 }
        );
    }

    #[test]
    fn no_reports_at_all_are_not_judged() {
        let mut w = StallWatch::default();
        for i in 0..10 {
            assert_eq!(w.observe(100 * i, None, None), StallChange::Unchanged);
        }
    }
}
