//! Layer choice in the room: each subscriber's estimate shared among its
//! video subscriptions ([`crate::engine::layers::allocate`]), the keyframe
//! requests a new choice needs, and dynacast toward the publishers.

use super::{MediaRoom, Timer};
use crate::engine::layers::{
    allocate, is_starved, Budget, LayerOffer, Want, ALLOCATE_EVERY, AUDIO_BPS, DYNACAST_OFF_AFTER,
    ESTIMATE_WINDOW, HOLD_AFTER_DOWNGRADE, INITIAL_ESTIMATE_BPS, UPGRADE_MARGIN,
};
use crate::keyframe::KeyframeKind;
use signaling::ids::{ParticipantId, TrackId};
use signaling::media::{MediaEvent, SubscriptionPrefs};
use signaling::protocol::{MediaKind, Quality};
use std::cmp::Reverse;
use std::time::Instant;
use str0m::bwe::Bitrate;
use tracing::debug;

impl MediaRoom {
    /// The subscriber changed how it shows a track.
    pub fn update_subscription(
        &mut self,
        participant: ParticipantId,
        track: TrackId,
        prefs: SubscriptionPrefs,
        now: Instant,
    ) {
        let Some(slot) = self.peer_slot(participant) else {
            return;
        };
        let peer = self.peers[slot].as_mut().expect("found by slot");
        match peer.prefs.iter_mut().find(|(t, _)| *t == track) {
            Some((_, p)) if *p == prefs => return,
            Some((_, p)) => *p = prefs,
            None => peer.prefs.push((track, prefs)),
        }
        let mut known = false;
        for dt in peer.downtracks.iter_mut().flatten() {
            if dt.track == track {
                dt.prefs = prefs;
                known = true;
            }
        }
        if !known {
            // Not subscribed (yet): keep it for the subscription, but never
            // more entries than tracks in the room.
            let tracks = &self.tracks;
            peer.prefs
                .retain(|(t, _)| tracks.iter().any(|x| x.id == *t));
        }
        self.allocate_peer(slot, now);
        self.mark_dirty(slot);
    }

    /// A subscriber's downlink estimate, from str0m's BWE (tests set it directly).
    /// Layers follow it at the next allocation.
    pub fn set_estimate(&mut self, slot: usize, bps: u64, now: Instant) {
        if let Some(peer) = self.peer_mut(slot) {
            peer.estimate_bps = Some(bps);
            // Older reports go, but the newest of them: it was in force when
            // the window began.
            let old = &peer.recent_estimates;
            if let Some(i) = old
                .iter()
                .rposition(|(t, _)| now.saturating_duration_since(*t) >= ESTIMATE_WINDOW)
            {
                peer.recent_estimates.drain(..i);
            }
            peer.recent_estimates.push((now, bps));
        }
    }

    /// Make sure the periodic layer work is scheduled.
    pub(super) fn schedule_layers(&mut self, now: Instant) {
        if self.layers_timer.is_none() {
            let due = now + ALLOCATE_EVERY;
            self.layers_timer = Some(due);
            self.timers.push(Reverse((due, Timer::Layers)));
        }
    }

    /// Every `ALLOCATE_EVERY`: measure the layers, re-choose every
    /// subscription's layer, tell publishers which layers are needed.
    pub(super) fn layers_due(&mut self, now: Instant) {
        self.layers_timer = None;
        if self.is_empty() {
            return;
        }
        let over = self
            .layers_sampled
            .map_or(ALLOCATE_EVERY, |t| now.saturating_duration_since(t));
        self.layers_sampled = Some(now);
        for t in &mut self.tracks {
            for l in &mut t.layers {
                l.sample(over);
            }
        }
        let slots: Vec<usize> = self.peers().map(|(s, _)| s).collect();
        for &slot in &slots {
            self.allocate_peer(slot, now);
            self.grade(slot, now);
        }
        self.dynacast(now);
        if let Some(link) = &self.link {
            for (_, p) in self.peers() {
                if let Some(e) = p.estimate_bps {
                    link.estimate.observe(e as f64);
                }
            }
        }
        self.schedule_layers(now);
    }

    /// Grade a participant's connection, and tell the room when it changed.
    fn grade(&mut self, slot: usize, now: Instant) {
        let Some(peer) = self.peer_mut(slot) else {
            return;
        };
        let mut streams = peer.downtracks.iter().flatten().peekable();
        if streams.peek().is_some() {
            let worst = streams.map(|d| d.loss).fold(0.0, f32::max);
            peer.quality.down_loss(worst);
        }
        // A low estimate says nothing when the participant wants no more (an
        // estimate sinks to what is sent): it counts only below that.
        let limiting = peer.estimate_bps.filter(|e| *e < peer.wanted_bps);
        if let Some(quality) = peer.quality.evaluate(limiting, now) {
            let _ = peer.events.try_send(MediaEvent::Quality {
                participant: peer.participant,
                quality,
            });
        }
    }

    /// Re-choose the layer of every subscription of one subscriber, and ask
    /// for the keyframes the new choices wait for.
    pub(super) fn allocate_peer(&mut self, slot: usize, now: Instant) {
        let Some(peer) = self.peers.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let mut index = Vec::new();
        let mut wants = Vec::new();
        // Per want: the layer the client would get with bandwidth to spare.
        let mut wished: Vec<Option<Quality>> = Vec::new();
        let mut audio = 0u64;
        let mut wanted_bps = 0u64;
        for (i, dt) in peer.downtracks.iter().enumerate() {
            let Some(dt) = dt else { continue };
            let Some(track) = self.tracks.iter().find(|t| t.id == dt.track) else {
                continue;
            };
            let paused = dt.prefs.paused || track.host_muted;
            if dt.kind == MediaKind::Audio {
                audio += u64::from(!paused);
                continue;
            }
            let mut layers = [None; 3];
            for l in &track.layers {
                layers[l.quality.index()] = Some(LayerOffer {
                    cost_bps: l.cost_bps(),
                    live: l.is_live(now),
                });
            }
            let best = Quality::ALL
                .into_iter()
                .rev()
                .filter(|q| *q <= dt.prefs.quality)
                .find(|q| layers[q.index()].is_some())
                .or_else(|| {
                    Quality::ALL
                        .into_iter()
                        .find(|q| layers[q.index()].is_some())
                })
                .filter(|_| !paused);
            // What it would cost unconstrained: the BWE probes toward it.
            wanted_bps += best
                .and_then(|q| layers[q.index()])
                .map_or(0, |l| l.cost_bps);
            wished.push(best);
            wants.push(Want {
                first_claim: track.screen || dt.prefs.pinned,
                paused,
                quality: dt.prefs.quality,
                layers,
                desired: dt.desired,
                hold_upgrades: dt
                    .last_downgrade
                    .is_some_and(|t| now.saturating_duration_since(t) < HOLD_AFTER_DOWNGRADE),
            });
            index.push(i);
        }
        let audio_bps = audio * AUDIO_BPS;
        // A subscriber that received no video has sent its estimator nothing
        // to measure: str0m's estimate sinks to the audio rate. Video wanted
        // again starts from a fresh estimate, as at join, and probes up.
        let video_was_on = peer
            .downtracks
            .iter()
            .flatten()
            .any(|d| d.kind == MediaKind::Video && d.target.is_some());
        let video_wanted = wants.iter().any(|w| !w.paused);
        let fresh = video_wanted
            && !video_was_on
            && peer.estimate_bps.is_some_and(|e| e < INITIAL_ESTIMATE_BPS);
        let peer = if fresh {
            let peer = self.peers[slot].as_mut().expect("checked above");
            peer.rtc.bwe().reset(Bitrate::bps(INITIAL_ESTIMATE_BPS));
            peer.estimate_bps = Some(INITIAL_ESTIMATE_BPS);
            peer.recent_estimates.clear();
            &*peer
        } else {
            peer
        };
        let budget = peer.estimate_bps.map(|e| {
            let floor = estimate_floor(&peer.recent_estimates, now).map_or(e, |f| f.min(e));
            Budget {
                now_bps: e.saturating_sub(audio_bps),
                floor_bps: floor.saturating_sub(audio_bps),
            }
        });
        // Starved of video only when some video is wanted.
        let starved =
            video_wanted && is_starved(peer.estimate_bps, peer.starved, self.starved_below_bps);
        let choices = allocate(budget, starved, &wants);

        let peer = self.peers[slot].as_mut().expect("checked above");
        if starved != peer.starved {
            peer.starved = starved;
            let _ = peer.events.try_send(MediaEvent::Downlink {
                participant: peer.participant,
                starved,
                estimate_kbps: peer.estimate_bps.unwrap_or(0) / 1000,
            });
        }
        // The estimate never grows past what is desired, and an upgrade needs
        // its margin on top: desire that much more.
        peer.wanted_bps = wanted_bps + audio * AUDIO_BPS;
        let desired = ((wanted_bps as f64 * (1.0 + 2.0 * UPGRADE_MARGIN)) as u64
            + audio * AUDIO_BPS)
            .max(AUDIO_BPS);
        // A wish the estimate does not allow: look for more (see `probing`).
        let unmet = choices
            .iter()
            .zip(&wished)
            .any(|(c, w)| w.is_some() && c.desired < *w);
        let step = peer.prober.step(now, unmet, peer.estimate_bps);
        // str0m probes when it sees the desired rate rise: lower it now.
        let desired_now = if step.probe { AUDIO_BPS } else { desired };
        // A starved link carries what it can already: probes only.
        let minimum = if starved {
            0
        } else {
            step.pad_bps.min(desired_now)
        };
        // Only a real change: each call re-arms str0m's estimator timers.
        if peer.estimate_bps.is_some()
            && (desired_now.abs_diff(peer.bwe_desired) > desired_now / 10
                || minimum.abs_diff(peer.bwe_minimum) > minimum.max(peer.bwe_minimum) / 10)
        {
            peer.bwe_desired = desired_now;
            peer.bwe_minimum = minimum;
            peer.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired_now));
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            // Per video subscription: track wish/desired/target/current.
            let layer = |q: Option<Quality>| q.map_or('-', |q| ['l', 'm', 'h'][q.index()]);
            let tracks: String = index
                .iter()
                .filter_map(|i| peer.downtracks[*i].as_ref())
                .zip(&choices)
                .map(|(d, c)| {
                    let [w, want, t, cur] = [d.wish, c.desired, c.target, d.current].map(layer);
                    format!("{}:{w}{want}{t}{cur} ", d.track)
                })
                .collect();
            debug!(room = %self.id, participant = %peer.participant, estimate = ?peer.estimate_bps, desired, starved, unmet, pad = minimum > 0, %tracks, "layers allocated");
        }
        let connected = peer.connected;
        let mut keyframes: Vec<(TrackId, Quality)> = Vec::new();
        for ((i, c), wish) in index.into_iter().zip(choices).zip(wished.iter().copied()) {
            let dt = peer.downtracks[i].as_mut().expect("indexed above");
            // Bandwidth took a layer away (not the client's wish): hold upgrades a while.
            if c.desired < dt.desired && c.desired < wish {
                dt.last_downgrade = Some(now);
            }
            dt.desired = c.desired;
            dt.wish = wish;
            if c.target == dt.target {
                continue;
            }
            match c.target {
                None => dt.pause(),
                Some(q) => {
                    dt.target = Some(q);
                    if dt.current != Some(q) && connected {
                        keyframes.push((dt.track, q));
                    }
                }
            }
        }
        // Audio follows pause and host mute only.
        let tracks = &self.tracks;
        for dt in peer.downtracks.iter_mut().flatten() {
            if dt.kind != MediaKind::Audio {
                continue;
            }
            let muted = tracks
                .iter()
                .find(|t| t.id == dt.track)
                .is_some_and(|t| t.host_muted);
            if dt.prefs.paused || muted {
                if dt.target.is_some() {
                    dt.pause();
                }
            } else {
                dt.target = Some(Quality::High);
            }
        }
        for (track, layer) in keyframes {
            self.want_keyframe(track, layer, KeyframeKind::Pli, now);
        }
    }

    /// Tell each simulcast publisher which layers some subscriber needs: off a
    /// while after the last need ends, on as soon as one appears.
    fn dynacast(&mut self, now: Instant) {
        let mut changes: Vec<(usize, TrackId, Vec<Quality>)> = Vec::new();
        for t in &mut self.tracks {
            if !t.is_simulcast() {
                continue;
            }
            let mut needed = [false; 3];
            for r in &t.subscribers {
                if let Some(dt) = self.peers[r.peer]
                    .as_ref()
                    .and_then(|p| p.downtracks.get(r.slot))
                    .and_then(Option::as_ref)
                {
                    // What subscribers wish for, not only what their estimate
                    // allows now: a layer lost to a dip must still be there
                    // when the estimate recovers.
                    for q in [dt.wish, dt.desired, dt.target, dt.current]
                        .into_iter()
                        .flatten()
                    {
                        needed[q.index()] = true;
                    }
                }
            }
            let active: Vec<Quality> = t
                .layers
                .iter_mut()
                .filter_map(|l| {
                    if needed[l.quality.index()] {
                        l.last_needed = now;
                    }
                    let on = now.saturating_duration_since(l.last_needed) < DYNACAST_OFF_AFTER;
                    on.then_some(l.quality)
                })
                .collect();
            let told = t
                .told_active
                .clone()
                .unwrap_or_else(|| t.layers.iter().map(|l| l.quality).collect());
            if active != told && now.saturating_duration_since(t.created_at) >= DYNACAST_OFF_AFTER {
                t.told_active = Some(active.clone());
                changes.push((t.owner, t.id, active));
            }
        }
        for (owner, track, active) in changes {
            if let Some(peer) = self.peer_mut(owner) {
                let _ = peer.events.try_send(MediaEvent::PublishLayers {
                    participant: peer.participant,
                    track,
                    active,
                });
            }
        }
    }

    /// Participants by announced connection quality (excellent, good, poor, lost).
    pub fn quality_counts(&self) -> [u64; 4] {
        let mut counts = [0; 4];
        for (_, p) in self.peers() {
            if let Some(q) = p.quality.announced() {
                counts[q as usize] += 1;
            }
        }
        counts
    }

    /// Video subscriptions paused now (any reason).
    pub fn paused_count(&self) -> usize {
        self.peers()
            .flat_map(|(_, p)| p.downtracks.iter().flatten())
            .filter(|d| d.kind == MediaKind::Video && d.target.is_none())
            .count()
    }
}

/// The lowest estimate in force over the last `ESTIMATE_WINDOW`: the reports
/// made in it, and the one before, still in force when it began (a jump after
/// a steady spell must hold for the window too).
fn estimate_floor(reports: &[(Instant, u64)], now: Instant) -> Option<u64> {
    let inside = |t: &Instant| now.saturating_duration_since(*t) < ESTIMATE_WINDOW;
    let before = reports.iter().rev().find(|(t, _)| !inside(t));
    reports
        .iter()
        .filter(|(t, _)| inside(t))
        .chain(before)
        .map(|(_, b)| *b)
        .min()
}
