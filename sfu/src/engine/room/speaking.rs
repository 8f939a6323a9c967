//! Speakers in the room: the ranking is recomputed every `RANK_EVERY`, and
//! signaling is told when it changes (see `engine::speakers`).

use super::{MediaRoom, Timer};
use crate::engine::speakers::RANK_EVERY;
use signaling::media::MediaEvent;
use std::cmp::Reverse;
use std::time::Instant;

impl MediaRoom {
    /// Make sure the speaker ranking is scheduled.
    pub(super) fn schedule_speakers(&mut self, now: Instant) {
        if self.speakers_timer.is_none() {
            let due = now + RANK_EVERY;
            self.speakers_timer = Some(due);
            self.timers.push(Reverse((due, Timer::Speakers)));
        }
    }

    pub(super) fn speakers_due(&mut self, now: Instant) {
        self.speakers_timer = None;
        if self.is_empty() {
            return;
        }
        if let Some(ranking) = self.speakers.rank(now) {
            // Every peer of a room reports to the same signaling room.
            if let Some((_, peer)) = self.peers().next() {
                let _ = peer.events.try_send(MediaEvent::Speakers {
                    speakers: ranking.speakers,
                    dominant: ranking.dominant,
                });
            }
        }
        self.schedule_speakers(now);
    }
}
