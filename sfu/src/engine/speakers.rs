//! Who is speaking, from the RFC 6464 audio level every audio packet carries:
//! the loudest few microphones are forwarded, the rest are not, and the room is
//! told who speaks. Pure and sans-IO: packets in with their time, a ranking out.
//!
//! Each microphone's score is its mean loudness over the last second (one
//! packet is 20 ms), counting only packets above the speech threshold. A
//! 200 ms cough scores a fifth of what the same voice held for a second does,
//! so it does not displace a steady speaker. A microphone that falls out of
//! the loudest set stays audible for a hangover, so a speaker's pauses between
//! sentences are not cut, and the dominant speaker changes only when another
//! has been louder for a while.

use signaling::ids::{ParticipantId, TrackId};
use std::time::{Duration, Instant};

/// How often the ranking is recomputed.
pub const RANK_EVERY: Duration = Duration::from_millis(200);
/// Packets in the scoring window (50 x 20 ms = 1 s).
const WINDOW: usize = 50;
/// Levels at or below this (dBov) are not speech.
const SPEECH_DBOV: i8 = -60;
/// A score below this is silence.
const MIN_SCORE: u32 = 2;
/// A microphone that left the loudest set stays audible this long.
const HANGOVER: Duration = Duration::from_millis(1500);
/// A challenger becomes dominant after being louder than the dominant speaker this long.
const DOMINANCE_AFTER: Duration = Duration::from_millis(1000);
/// A microphone with no packet for this long scores nothing (it stopped or was muted).
const STALE_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Voice {
    track: TrackId,
    owner: ParticipantId,
    /// Loudness above the speech threshold, per packet, in a ring.
    ring: [u8; WINDOW],
    next: usize,
    last_packet: Option<Instant>,
    score: u32,
    /// Audible (among the loudest, or in its hangover) and until when.
    audible_until: Option<Instant>,
    /// Since when this voice has been louder than the dominant one.
    louder_since: Option<Instant>,
}

/// What a ranking changed, for the room to announce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ranking {
    /// Participants speaking now, loudest first.
    pub speakers: Vec<ParticipantId>,
    pub dominant: Option<ParticipantId>,
}

#[derive(Debug)]
pub struct Speakers {
    voices: Vec<Voice>,
    /// How many microphones are forwarded at once.
    loudest: usize,
    dominant: Option<TrackId>,
    last: Ranking,
}

impl Speakers {
    pub fn new(loudest: usize) -> Self {
        Self {
            voices: Vec::new(),
            loudest: loudest.max(1),
            dominant: None,
            last: Ranking::default(),
        }
    }

    pub fn add(&mut self, track: TrackId, owner: ParticipantId) {
        if !self.voices.iter().any(|v| v.track == track) {
            self.voices.push(Voice {
                track,
                owner,
                ring: [0; WINDOW],
                next: 0,
                last_packet: None,
                score: 0,
                audible_until: None,
                louder_since: None,
            });
        }
    }

    pub fn remove(&mut self, track: TrackId) {
        self.voices.retain(|v| v.track != track);
        if self.dominant == Some(track) {
            self.dominant = None;
        }
    }

    /// One audio packet's level (`-dBov`, 0 loudest, -127 silence), per
    /// packet: recorded, and whether the microphone is heard now (among the
    /// loudest, or in its hangover). Few rooms have more microphones than the
    /// loudest set: then every one is.
    pub fn hear(&mut self, track: TrackId, level: Option<i8>, now: Instant) -> bool {
        let everyone = self.voices.len() <= self.loudest;
        let Some(v) = self.voices.iter_mut().find(|v| v.track == track) else {
            return true;
        };
        let loud = level.map_or(0, |l| l.saturating_sub(SPEECH_DBOV).max(0) as u8);
        v.ring[v.next] = loud;
        v.next = (v.next + 1) % WINDOW;
        v.last_packet = Some(now);
        everyone || v.audible_until.is_some_and(|t| now < t)
    }

    /// Whether this microphone's packets are forwarded now.
    #[cfg(test)]
    fn is_audible(&self, track: TrackId, now: Instant) -> bool {
        self.voices.len() <= self.loudest
            || self
                .voices
                .iter()
                .find(|v| v.track == track)
                .is_none_or(|v| v.audible_until.is_some_and(|t| now < t))
    }

    /// Recompute scores, the loudest set and the dominant speaker. Returns
    /// the new ranking when it changed.
    pub fn rank(&mut self, now: Instant) -> Option<Ranking> {
        for v in &mut self.voices {
            let fresh = v
                .last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < STALE_AFTER);
            v.score = if fresh {
                v.ring.iter().map(|x| u32::from(*x)).sum::<u32>() / WINDOW as u32
            } else {
                0
            };
        }
        let mut order: Vec<usize> = (0..self.voices.len())
            .filter(|i| self.voices[*i].score >= MIN_SCORE)
            .collect();
        order.sort_by_key(|i| std::cmp::Reverse(self.voices[*i].score));
        for &i in order.iter().take(self.loudest) {
            self.voices[i].audible_until = Some(now + HANGOVER);
        }
        // Hangovers keep recent speakers audible, but never more than one
        // beyond the set: the quietest of them end first.
        let mut audible: Vec<usize> = (0..self.voices.len())
            .filter(|i| self.voices[*i].audible_until.is_some_and(|t| now < t))
            .collect();
        if audible.len() > self.loudest + 1 {
            audible.sort_by_key(|i| std::cmp::Reverse(self.voices[*i].score));
            for &i in &audible[self.loudest + 1..] {
                self.voices[i].audible_until = None;
            }
        }

        // Dominance: the loudest voice takes over only after being louder
        // than the dominant one for a while; a silent dominant yields at once
        // to anyone speaking steadily.
        let dominant_score = self
            .dominant
            .and_then(|d| self.voices.iter().find(|v| v.track == d))
            .map_or(0, |v| v.score);
        if let Some(&top) = order.first() {
            let challenger = &mut self.voices[top];
            if Some(challenger.track) != self.dominant && challenger.score > dominant_score {
                let since = *challenger.louder_since.get_or_insert(now);
                if self.dominant.is_none()
                    || now.saturating_duration_since(since) >= DOMINANCE_AFTER
                {
                    self.dominant = Some(challenger.track);
                }
            }
        }
        for v in &mut self.voices {
            if Some(v.track) == self.dominant || v.score <= dominant_score {
                v.louder_since = None;
            }
        }

        let ranking = Ranking {
            speakers: order.iter().map(|i| self.voices[*i].owner).collect(),
            dominant: self
                .dominant
                .and_then(|d| self.voices.iter().find(|v| v.track == d))
                .map(|v| v.owner),
        };
        if ranking == self.last {
            return None;
        }
        self.last = ranking.clone();
        Some(ranking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS20: Duration = Duration::from_millis(20);

    /// Feed `levels[i]` to track i for `d` of packets, ranking every 200 ms.
    fn talk(s: &mut Speakers, now: &mut Instant, levels: &[Option<i8>], d: Duration) {
        let end = *now + d;
        let mut next_rank = *now;
        while *now < end {
            for (i, l) in levels.iter().enumerate() {
                if let Some(l) = l {
                    s.hear(TrackId(i as u64), Some(*l), *now);
                }
            }
            if *now >= next_rank {
                s.rank(*now);
                next_rank = *now + RANK_EVERY;
            }
            *now += MS20;
        }
    }

    fn room(n: u64, loudest: usize) -> Speakers {
        let mut s = Speakers::new(loudest);
        for i in 0..n {
            s.add(TrackId(i), ParticipantId(100 + i));
        }
        s
    }

    #[test]
    fn the_loudest_three_of_six_are_audible() {
        let mut s = room(6, 3);
        let mut now = Instant::now();
        let levels = [-20, -25, -30, -50, -127, -127].map(Some);
        talk(&mut s, &mut now, &levels, Duration::from_secs(3));
        let audible: Vec<bool> = (0..6).map(|i| s.is_audible(TrackId(i), now)).collect();
        assert_eq!(audible, [true, true, true, false, false, false]);
        assert_eq!(s.last.dominant, Some(ParticipantId(100)));
    }

    #[test]
    fn a_200_ms_burst_changes_nothing() {
        let mut s = room(6, 3);
        let mut now = Instant::now();
        let steady = [
            Some(-30),
            Some(-32),
            Some(-34),
            Some(-127),
            Some(-127),
            Some(-127),
        ];
        talk(&mut s, &mut now, &steady, Duration::from_secs(3));
        let before = s.last.clone();
        let mut burst = steady;
        burst[4] = Some(-3); // a loud cough at the fifth site
        talk(&mut s, &mut now, &burst, Duration::from_millis(200));
        talk(&mut s, &mut now, &steady, Duration::from_secs(2));
        assert!(!s.is_audible(TrackId(4), now));
        assert_eq!(s.last, before, "the ranking ignored the burst");
    }

    #[test]
    fn the_dominant_speaker_changes_when_another_speaks_on() {
        let mut s = room(3, 3);
        let mut now = Instant::now();
        talk(
            &mut s,
            &mut now,
            &[Some(-20), Some(-127), Some(-127)],
            Duration::from_secs(2),
        );
        assert_eq!(s.last.dominant, Some(ParticipantId(100)));
        // 0 stops, 1 speaks: 1 takes over within about a second.
        talk(
            &mut s,
            &mut now,
            &[Some(-127), Some(-25), Some(-127)],
            Duration::from_millis(1800),
        );
        assert_eq!(s.last.dominant, Some(ParticipantId(101)));
    }

    #[test]
    fn a_pause_between_sentences_keeps_the_speaker_audible() {
        let mut s = room(5, 1);
        let mut now = Instant::now();
        let levels = [Some(-20), Some(-40), Some(-127), Some(-127), Some(-127)];
        talk(&mut s, &mut now, &levels, Duration::from_secs(2));
        // 0 pauses for 0.6 s while 1 goes on quietly.
        talk(
            &mut s,
            &mut now,
            &[Some(-127), Some(-40), Some(-127), Some(-127), Some(-127)],
            Duration::from_millis(600),
        );
        assert!(s.is_audible(TrackId(0), now), "hangover");
    }

    #[test]
    fn never_more_than_one_beyond_the_set_is_audible() {
        // Eight voices whose levels keep changing places.
        let mut s = room(8, 3);
        let mut now = Instant::now();
        let mut most = 0;
        for round in 0..40u64 {
            let levels: Vec<Option<i8>> = (0..8u64)
                .map(|i| Some(-20 - ((i * 7 + round * 3) % 25) as i8))
                .collect();
            talk(&mut s, &mut now, &levels, Duration::from_millis(400));
            let audible = (0..8).filter(|i| s.is_audible(TrackId(*i), now)).count();
            most = most.max(audible);
        }
        assert!(most <= 4, "{most} audible at once");
    }

    #[test]
    fn with_no_more_microphones_than_the_set_all_are_audible() {
        let s = room(3, 3);
        assert!((0..3).all(|i| s.is_audible(TrackId(i), Instant::now())));
    }
}
