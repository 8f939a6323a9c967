//! Looking for more bandwidth while a subscriber's wish goes unmet.
//!
//! str0m's estimator learns only from what is sent. A subscriber that lost a
//! layer to a dip gets less than it could carry, and after loss str0m's
//! loss-based estimator lets the estimate grow only to 1.5x what the receiver
//! acknowledges: left alone, it would stay on its low layer after the link
//! recovers. So while a wish is unmet, the [`Prober`] asks str0m for an
//! allocation probe (a short burst above the estimate) and opens a padding
//! window in which media and padding fill most of the estimate. Windows go
//! on while each one finds more; a falling estimate ends one at once; and
//! the wait before the next grows while they find nothing. Sans-IO: time
//! and the estimate are passed in.

use std::time::{Duration, Instant};

/// The first wait, and the longest, before probing for an unmet wish.
pub const PROBE_FIRST: Duration = Duration::from_secs(1);
pub const PROBE_MAX: Duration = Duration::from_secs(4);
/// How long one padding window lasts.
pub const PAD_WINDOW: Duration = Duration::from_secs(2);
/// The share of the estimate that media and padding fill in a window: the
/// headroom keeps a link that really is that narrow from queueing the video
/// behind the padding.
pub const PAD_SHARE: f64 = 0.85;

#[derive(Debug)]
pub struct Prober {
    /// When to start the next window, while none is open.
    next: Option<Instant>,
    backoff: Duration,
    /// The open window's end, and the estimate when it opened.
    pad_until: Option<Instant>,
    from_bps: u64,
}

/// What one allocation must do for the prober.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeStep {
    /// Ask str0m for an allocation probe: it sends one when it sees the
    /// desired rate rise, so lower it now and raise it at the next allocation.
    pub probe: bool,
    /// The minimum rate str0m fills with padding now (0: none).
    pub pad_bps: u64,
}

impl Default for Prober {
    fn default() -> Self {
        Self {
            next: None,
            backoff: PROBE_FIRST,
            pad_until: None,
            from_bps: 0,
        }
    }
}

impl Prober {
    /// One allocation's turn: `unmet` when some wish exceeds what the
    /// estimate allows; `estimate` is `None` before str0m has one.
    pub fn step(&mut self, now: Instant, unmet: bool, estimate: Option<u64>) -> ProbeStep {
        let Some(estimate) = estimate.filter(|_| unmet) else {
            *self = Self::default();
            return ProbeStep {
                probe: false,
                pad_bps: 0,
            };
        };
        let mut probe = false;
        if let Some(until) = self.pad_until {
            let fell = estimate < self.from_bps - self.from_bps / 10;
            let grew = estimate > self.from_bps + self.from_bps / 5;
            if fell || (now >= until && !grew) {
                self.pad_until = None;
                self.backoff = (self.backoff * 2).min(PROBE_MAX);
                self.next = Some(now + self.backoff);
            } else if now >= until {
                // It found more: another window, from the new estimate.
                self.open(now, estimate);
                self.backoff = PROBE_FIRST;
                probe = true;
            }
        } else {
            match self.next {
                None => self.next = Some(now + self.backoff),
                Some(t) if now >= t => {
                    self.open(now, estimate);
                    probe = true;
                }
                Some(_) => {}
            }
        }
        let pad_bps = if self.pad_until.is_some() {
            (estimate as f64 * PAD_SHARE) as u64
        } else {
            0
        };
        ProbeStep { probe, pad_bps }
    }

    fn open(&mut self, now: Instant, estimate: u64) {
        self.pad_until = Some(now + PAD_WINDOW);
        self.from_bps = estimate;
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(500);

    /// Steps every 500 ms for `d` with the estimate `e(t)`, returning the steps.
    fn run(
        p: &mut Prober,
        now: &mut Instant,
        d: Duration,
        e: impl Fn(Duration) -> u64,
    ) -> Vec<ProbeStep> {
        let start = *now;
        let mut out = Vec::new();
        while *now < start + d {
            out.push(p.step(*now, true, Some(e(*now - start))));
            *now += TICK;
        }
        out
    }

    #[test]
    fn an_unmet_wish_probes_and_pads_after_the_first_wait() {
        let mut p = Prober::default();
        let mut now = Instant::now();
        let steps = run(&mut p, &mut now, Duration::from_millis(1500), |_| 400_000);
        assert_eq!(
            steps[0],
            ProbeStep {
                probe: false,
                pad_bps: 0
            }
        );
        assert_eq!(steps[1].pad_bps, 0, "waits PROBE_FIRST");
        assert!(steps[2].probe, "probe after a second: {steps:?}");
        assert_eq!(steps[2].pad_bps, 340_000, "pads to 85 % of the estimate");
    }

    #[test]
    fn a_met_wish_stops_padding_at_once() {
        let mut p = Prober::default();
        let mut now = Instant::now();
        run(&mut p, &mut now, Duration::from_millis(1500), |_| 400_000);
        let s = p.step(now, false, Some(400_000));
        assert_eq!(
            s,
            ProbeStep {
                probe: false,
                pad_bps: 0
            }
        );
    }

    #[test]
    fn windows_go_on_while_they_find_more() {
        let mut p = Prober::default();
        let mut now = Instant::now();
        // The link was lifted: each second the estimate grows by 30 %.
        let steps = run(&mut p, &mut now, Duration::from_secs(9), |t| {
            (400_000.0 * 1.3f64.powf(t.as_secs_f64())) as u64
        });
        let padding = steps.iter().skip(2).filter(|s| s.pad_bps > 0).count();
        assert_eq!(padding, steps.len() - 2, "padded throughout: {steps:?}");
        assert!(
            steps.iter().filter(|s| s.probe).count() >= 3,
            "a probe per window"
        );
    }

    #[test]
    fn a_falling_estimate_ends_the_window_and_the_wait_doubles() {
        let mut p = Prober::default();
        let mut now = Instant::now();
        // A narrow link: padding makes the estimate fall.
        let steps = run(&mut p, &mut now, Duration::from_secs(20), |_| 400_000);
        let starts: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.probe)
            .map(|(i, _)| i)
            .collect();
        let gaps: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        // Window (4 ticks) plus a wait of 2 s, 4 s, then 4 s again (the cap).
        assert_eq!(gaps[..3], [8, 12, 12], "{starts:?}");
        let mut p = Prober::default();
        let steps = run(&mut p, &mut now, Duration::from_secs(3), |t| {
            if t < Duration::from_millis(1500) {
                400_000
            } else {
                300_000
            }
        });
        assert!(
            steps[2].pad_bps > 0 && steps[3].pad_bps == 0,
            "ends when it falls: {steps:?}"
        );
    }
}
