//! The down-track munger: rewrites one subscription's sequence numbers and
//! timestamps so the subscriber sees one continuous stream on a fixed SSRC,
//! whatever happens upstream.
//!
//! Rules (see `docs/architecture.md`):
//! - Sequence numbers are extended (64-bit) on both sides; only the low 16 bits go on the wire.
//! - Upstream gaps stay gaps, so the subscriber can NACK what was lost.
//! - Reordered and repaired (RTX) packets map through the same offset and fill their gap.
//! - After a source switch, output continues at `last output + 1`, and the
//!   timestamp advances by the wall-clock time since the last output.
//! - A packet that the SFU deliberately does not forward can be skipped without leaving a hole.
//! - The first output sequence number is below 65536, so the SRTP rollover counter starts at 0.

use std::time::Instant;

/// An input jump larger than this is treated as a new source (a publisher restart), not loss.
const MAX_FORWARD_JUMP: u64 = 3_000;
/// A late packet further behind the newest than this is dropped: the subscriber gave up on it long ago.
const MAX_LATE: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Munged {
    Forward { seq: u64, ts: u32 },
    Drop(MungeDrop),
}

/// Why the munger refused a packet. A closed set, exported as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MungeDrop {
    /// Belongs to the source before the last switch; its numbers would collide.
    BeforeSwitch,
    /// Too far behind the newest packet to be useful.
    TooLate,
}

#[derive(Debug, Clone)]
struct Mapping {
    /// out = in + seq_offset (wrapping).
    seq_offset: u64,
    /// out = in + ts_offset (wrapping).
    ts_offset: u32,
    /// First input sequence number of the current source.
    epoch_start: u64,
    /// Newest input sequence number seen from the current source.
    highest_in: u64,
}

#[derive(Debug, Clone)]
pub struct Munger {
    clock_rate: u32,
    initial_seq: u16,
    mapping: Option<Mapping>,
    switch_pending: bool,
    /// Newest output: sequence, timestamp and when it was written.
    last_out: Option<(u64, u32, Instant)>,
}

impl Munger {
    /// `initial_seq` is the first output sequence number (choose it at random per subscription).
    pub fn new(clock_rate: u32, initial_seq: u16) -> Self {
        Self {
            clock_rate,
            initial_seq,
            mapping: None,
            switch_pending: false,
            last_out: None,
        }
    }

    /// The next packet starts a new source: continue from the last output.
    pub fn switch_source(&mut self) {
        self.switch_pending = true;
    }

    /// Map one input packet. `now` is the packet's arrival time.
    pub fn munge(&mut self, in_seq: u64, in_ts: u32, now: Instant) -> Munged {
        let rebase = match &self.mapping {
            None => true,
            Some(_) if self.switch_pending => true,
            Some(m) => in_seq > m.highest_in && in_seq - m.highest_in > MAX_FORWARD_JUMP,
        };
        if rebase {
            self.rebase(in_seq, in_ts, now);
        }
        let m = self.mapping.as_mut().expect("rebase sets the mapping");
        if in_seq < m.epoch_start {
            return Munged::Drop(MungeDrop::BeforeSwitch);
        }
        if in_seq + MAX_LATE < m.highest_in {
            return Munged::Drop(MungeDrop::TooLate);
        }
        let seq = in_seq.wrapping_add(m.seq_offset);
        let ts = in_ts.wrapping_add(m.ts_offset);
        if in_seq >= m.highest_in {
            m.highest_in = in_seq;
            self.last_out = Some((seq, ts, now));
        }
        Munged::Forward { seq, ts }
    }

    /// The packet `in_seq` is deliberately not forwarded (padding, a filtered
    /// layer, a muted track, a frame a subscriber cannot decode). If it is
    /// newer than anything seen, later packets close up over it and over any
    /// packets lost before it: nothing in that stretch was forwarded. An
    /// out-of-order skip cannot be closed up and stays a gap.
    pub fn skip(&mut self, in_seq: u64) {
        if self.switch_pending {
            return; // the old source's numbers say nothing about the new one's
        }
        if let Some(m) = self.mapping.as_mut() {
            if in_seq > m.highest_in {
                m.seq_offset = m.seq_offset.wrapping_sub(in_seq - m.highest_in);
                m.highest_in = in_seq;
            }
        }
    }

    fn rebase(&mut self, in_seq: u64, in_ts: u32, now: Instant) {
        let (out_seq, out_ts) = match self.last_out {
            None => (u64::from(self.initial_seq), in_ts),
            Some((seq, ts, at)) => {
                // Advance the clock by the real time that passed, at least one tick,
                // so the receiver's jitter buffer sees a plausible new frame.
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)).max(1.0) as u32;
                (seq + 1, ts.wrapping_add(ticks))
            }
        };
        self.mapping = Some(Mapping {
            seq_offset: out_seq.wrapping_sub(in_seq),
            ts_offset: out_ts.wrapping_sub(in_ts),
            epoch_start: in_seq,
            highest_in: in_seq,
        });
        self.switch_pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn fwd(m: &mut Munger, seq: u64, ts: u32, t: Instant) -> (u64, u32) {
        match m.munge(seq, ts, t) {
            Munged::Forward { seq, ts } => (seq, ts),
            Munged::Drop(d) => panic!("unexpected drop {d:?} for {seq}"),
        }
    }

    /// (input seq, expected output seq or None for a drop), one source, initial 100.
    #[test]
    fn sequence_table() {
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &[u64], &[Option<u64>])] = &[
            (
                "in order",
                &[5000, 5001, 5002],
                &[Some(100), Some(101), Some(102)],
            ),
            (
                "gap stays a gap",
                &[5000, 5001, 5004],
                &[Some(100), Some(101), Some(104)],
            ),
            (
                "late packet fills its gap",
                &[5000, 5002, 5001],
                &[Some(100), Some(102), Some(101)],
            ),
            (
                "duplicate maps to the same number",
                &[5000, 5001, 5001],
                &[Some(100), Some(101), Some(101)],
            ),
            (
                "before the first packet is dropped",
                &[5000, 4999],
                &[Some(100), None],
            ),
            (
                "16-bit wraparound upstream",
                &[65_534, 65_535, 65_536, 65_537],
                &[Some(100), Some(101), Some(102), Some(103)],
            ),
            (
                "huge jump rebases to last+1",
                &[5000, 5001, 50_000],
                &[Some(100), Some(101), Some(102)],
            ),
            (
                "jump within the window is loss",
                &[5000, 5000 + MAX_FORWARD_JUMP],
                &[Some(100), Some(100 + MAX_FORWARD_JUMP)],
            ),
            (
                "too late is dropped",
                &[5000, 7000, 5500],
                &[Some(100), Some(2100), None],
            ),
        ];
        let t = Instant::now();
        for (name, input, expected) in cases {
            let mut m = Munger::new(90_000, 100);
            let got: Vec<Option<u64>> = input
                .iter()
                .map(|s| match m.munge(*s, 0, t) {
                    Munged::Forward { seq, .. } => Some(seq),
                    Munged::Drop(_) => None,
                })
                .collect();
            assert_eq!(&got[..], *expected, "case: {name}");
        }
    }

    #[test]
    fn output_wraps_16_bits_on_the_wire_but_stays_extended() {
        let mut m = Munger::new(90_000, 65_535);
        let t = Instant::now();
        assert_eq!(fwd(&mut m, 10, 0, t).0, 65_535);
        assert_eq!(fwd(&mut m, 11, 0, t).0, 65_536);
        assert_eq!(fwd(&mut m, 11, 0, t).0 as u16, 0);
    }

    #[test]
    fn switch_continues_from_last_output_and_advances_time() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000, 100);
        assert_eq!(fwd(&mut m, 1000, 9000, t0), (100, 9000));
        assert_eq!(fwd(&mut m, 1001, 12000, t0), (101, 12000));
        m.switch_source();
        // New source with unrelated numbers, 100 ms later.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(fwd(&mut m, 77, 555, t1), (102, 12000 + 9000));
        assert_eq!(fwd(&mut m, 78, 555 + 3000, t1), (103, 12000 + 9000 + 3000));
        // A straggler from the new source before its first packet has no place.
        assert_eq!(m.munge(76, 0, t1), Munged::Drop(MungeDrop::BeforeSwitch));
    }

    #[test]
    fn timestamp_wraps() {
        let t = Instant::now();
        let mut m = Munger::new(48_000, 1);
        assert_eq!(fwd(&mut m, 1, u32::MAX - 10, t).1, u32::MAX - 10);
        assert_eq!(fwd(&mut m, 2, 9, t).1, 9);
    }

    #[test]
    fn skip_in_order_leaves_no_hole_but_out_of_order_does() {
        let t = Instant::now();
        let mut m = Munger::new(90_000, 100);
        fwd(&mut m, 10, 0, t);
        m.skip(11);
        assert_eq!(fwd(&mut m, 12, 0, t).0, 101);
        m.skip(12); // already seen: no effect
        assert_eq!(fwd(&mut m, 13, 0, t).0, 102);
    }

    #[test]
    fn a_skipped_stretch_with_a_loss_in_it_still_closes_up() {
        let t = Instant::now();
        let mut m = Munger::new(90_000, 100);
        fwd(&mut m, 10, 0, t);
        m.skip(11);
        // 12 was lost upstream while the stretch was skipped.
        m.skip(13);
        m.skip(14);
        assert_eq!(
            fwd(&mut m, 15, 0, t).0,
            101,
            "no false loss when it resumes"
        );
    }

    proptest! {
        /// Any in-order stream with gaps: output gaps equal input gaps, and
        /// the first output is the initial number.
        #[test]
        fn gaps_are_preserved(start in 0u64..1_000_000, steps in proptest::collection::vec(1u64..50, 1..300), init in 0u16..=u16::MAX) {
            let t = Instant::now();
            let mut m = Munger::new(90_000, init);
            let mut in_seq = start;
            let (mut last_out, _) = fwd(&mut m, in_seq, 0, t);
            prop_assert_eq!(last_out, u64::from(init));
            for s in steps {
                in_seq += s;
                let (out, _) = fwd(&mut m, in_seq, 0, t);
                prop_assert_eq!(out - last_out, s);
                last_out = out;
            }
        }

        /// Reordering within a window: every packet maps to the same number it
        /// would have had in order, and duplicates map identically.
        #[test]
        fn reordering_and_duplicates_map_consistently(n in 2usize..200, swaps in proptest::collection::vec((0usize..200, 0usize..5), 0..100), dups in proptest::collection::vec(0usize..200, 0..20)) {
            let t = Instant::now();
            let mut order: Vec<u64> = (0..n as u64).map(|i| 1000 + i).collect();
            for (i, d) in swaps {
                let i = i % n;
                let j = (i + d).min(n - 1);
                order.swap(i, j);
            }
            for d in dups { let d = d % n; order.push(order[d]); }
            // The first packet fixes the mapping; put the lowest first.
            let min_pos = order.iter().position(|&s| s == 1000).unwrap();
            order.swap(0, min_pos);
            let mut m = Munger::new(90_000, 7);
            for s in order {
                let (out, _) = fwd(&mut m, s, 0, t);
                prop_assert_eq!(out, s - 1000 + 7);
            }
        }

        /// Across any number of switches, each new source starts at last output + 1.
        #[test]
        fn switches_are_contiguous(sources in proptest::collection::vec((0u64..1_000_000, 1usize..20), 1..10)) {
            let t = Instant::now();
            let mut m = Munger::new(90_000, 500);
            let mut last: Option<u64> = None;
            for (start, len) in sources {
                m.switch_source();
                for i in 0..len as u64 {
                    let (out, _) = fwd(&mut m, start + i, 0, t);
                    if let Some(l) = last { prop_assert_eq!(out, l + 1); }
                    last = Some(out);
                }
            }
        }
    }
}
