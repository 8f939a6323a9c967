//! Simulcast: the layers a published track arrives on, the choice of one
//! layer per subscription, and the VP8 rewriting that makes a layer switch
//! invisible to the subscriber's decoder.
//!
//! The choice is a pure function ([`allocate`]) of what each subscription
//! wants, what each layer costs, and the subscriber's downlink estimate, so
//! it is tested without a room. The room runs it every
//! [`ALLOCATE_EVERY`] and when a subscription changes.

use crate::keyframe::KeyframeRequests;
use signaling::protocol::Quality;
use std::time::{Duration, Instant};
use str0m::media::Rid;
use str0m::rtp::{Ssrc, Vp8Descriptor, Vp8Patch, Vp8PatchError};

/// How often a room re-measures its layers and re-chooses every subscription's layer.
pub const ALLOCATE_EVERY: Duration = Duration::from_millis(500);
/// A layer with no packet for this long is not being sent (the publisher's
/// encoder dropped it, or dynacast switched it off).
const LIVE_WITHIN: Duration = Duration::from_millis(1500);
/// What a layer is assumed to cost before it has been measured (the default
/// `simulcast.layers` rates), and at least, for a simulcast layer.
const NOMINAL_BPS: [u64; 3] = [150_000, 500_000, 1_500_000];
/// A subscriber's downlink estimate before any feedback (str0m's BWE starts
/// here), and again when video resumes after none was sent.
pub const INITIAL_ESTIMATE_BPS: u64 = 1_000_000;
/// Reserved per audio subscription before video is shared out.
pub const AUDIO_BPS: u64 = 50_000;
/// An upgrade needs the new layer's cost plus this fraction of it to fit.
pub const UPGRADE_MARGIN: f64 = 0.15;
/// No upgrade past the current layer for this long after a downgrade.
pub const HOLD_AFTER_DOWNGRADE: Duration = Duration::from_secs(4);
/// Upgrades must fit the lowest estimate seen over this window.
pub const ESTIMATE_WINDOW: Duration = Duration::from_secs(3);
/// A starved subscriber is fed again once its estimate passes the threshold by this factor.
const STARVED_EXIT_FACTOR: f64 = 1.3;
/// A layer nobody needs is switched off at the publisher after this long.
pub const DYNACAST_OFF_AFTER: Duration = Duration::from_secs(3);

/// The layer a RID names: `q`/`h`/`f` (and `l`/`m`) by name, anything else by
/// its place among the m-line's rids (first is lowest).
pub fn quality_of_rid(rid: &str, position: usize, count: usize) -> Quality {
    match rid {
        "q" | "l" | "low" => Quality::Low,
        "h" | "m" | "mid" => Quality::Mid,
        "f" | "high" => Quality::High,
        _ => {
            // Rank from the top, so two layers are mid and high.
            let from_top = count.saturating_sub(position + 1);
            Quality::ALL[2usize.saturating_sub(from_top)]
        }
    }
}

/// One layer of a published track, as the server receives it.
#[derive(Debug)]
pub struct LayerSource {
    pub quality: Quality,
    /// `None` for a track sent without simulcast.
    pub rid: Option<Rid>,
    /// The publisher's SSRC now carrying this layer, and the ones before it.
    pub ssrc: Option<Ssrc>,
    pub retired: Vec<Ssrc>,
    pub keyframes: KeyframeRequests,
    /// The time of this layer's live keyframe entry in the room's deadline queue.
    pub keyframe_timer: Option<Instant>,
    last_packet: Option<Instant>,
    /// Payload bytes since the last rate sample.
    bytes: u64,
    /// Smoothed bitrate; 0 until measured.
    bitrate_bps: u64,
    /// Last time a subscription wanted it (dynacast).
    pub last_needed: Instant,
}

impl LayerSource {
    pub fn new(quality: Quality, rid: Option<Rid>, now: Instant) -> Self {
        Self {
            quality,
            rid,
            ssrc: None,
            retired: Vec::new(),
            keyframes: KeyframeRequests::default(),
            keyframe_timer: None,
            last_packet: None,
            bytes: 0,
            bitrate_bps: 0,
            last_needed: now,
        }
    }

    /// Per packet: two additions and a store.
    pub fn arrived(&mut self, payload_len: usize, now: Instant) {
        self.bytes += payload_len as u64;
        self.last_packet = Some(now);
    }

    /// Fold the bytes since the last sample into the bitrate.
    pub fn sample(&mut self, over: Duration) {
        let secs = over.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let bytes = std::mem::take(&mut self.bytes);
        if bytes == 0 {
            return; // not sending: keep the last rate as its price when it resumes
        }
        // Payload plus RTP/SRTP/UDP/IP overhead of a ~1,100-byte packet.
        let rate = (bytes as f64 * 8.0 * 1.06 / secs) as u64;
        self.bitrate_bps = if self.bitrate_bps == 0 {
            rate
        } else {
            (self.bitrate_bps * 6 + rate * 4) / 10
        };
    }

    pub fn is_live(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LIVE_WITHIN)
    }

    /// What forwarding this layer is expected to cost. A simulcast layer costs
    /// at least half its nominal rate: an encoder ramps each layer up over its
    /// first seconds, and a layer chosen for its early, low rate would outgrow
    /// a weak link moments later. (Not all of it: a simple picture never
    /// reaches its encoder's cap.)
    pub fn cost_bps(&self) -> u64 {
        let nominal = NOMINAL_BPS[self.quality.index()];
        match (self.rid, self.bitrate_bps) {
            (Some(_), measured) => measured.max(nominal / 2),
            (None, 0) => nominal,
            (None, measured) => measured,
        }
    }
}

/// What allocation knows of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOffer {
    pub cost_bps: u64,
    pub live: bool,
}

/// One video subscription of a subscriber, as allocation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// A screen share or a pinned track: served first.
    pub first_claim: bool,
    pub paused: bool,
    /// The best layer worth sending for the tile.
    pub quality: Quality,
    /// The track's layers by quality.
    pub layers: [Option<LayerOffer>; 3],
    /// The layer allocation chose last time.
    pub desired: Option<Quality>,
    /// A downgrade was recent: hold upgrades past `desired`.
    pub hold_upgrades: bool,
}

/// Allocation's choice for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The layer the budget and the client's wish allow (dynacast keeps it on).
    pub desired: Option<Quality>,
    /// The layer to forward now: the best live one up to `desired`.
    pub target: Option<Quality>,
}

/// Whether a subscriber with this estimate is starved, given whether it was.
pub fn is_starved(estimate_bps: Option<u64>, was: bool, threshold_bps: u64) -> bool {
    match estimate_bps {
        None => false,
        Some(e) if was => (e as f64) < threshold_bps as f64 * STARVED_EXIT_FACTOR,
        Some(e) => e < threshold_bps,
    }
}

/// What a subscriber can spend on video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Now: what the current layers must fit in.
    pub now_bps: u64,
    /// The lowest estimate of the last few seconds: what an upgrade must fit
    /// in, so an estimate that swings does not swing the layers.
    pub floor_bps: u64,
}

/// Share `budget` (None: no estimate, no limit) among `wants`: first every
/// subscription's lowest layer in priority order (a first claim, or a track
/// with a single layer, gets it even over budget), then upgrades in the same
/// order. A starved subscriber keeps
/// only its first first-claim track, at its lowest layer.
pub fn allocate(budget: Option<Budget>, starved: bool, wants: &[Want]) -> Vec<Choice> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|i| !wants[*i].first_claim);
    let mut desired: Vec<Option<Quality>> = vec![None; wants.len()];
    if starved {
        if let Some(&i) = order
            .iter()
            .find(|i| wants[**i].first_claim && !wants[**i].paused)
        {
            desired[i] = lowest(&wants[i]);
        }
    } else {
        let clamp = |b: u64| b.min(i64::MAX as u64 / 2) as i64;
        let total = budget.map_or(i64::MAX / 2, |b| clamp(b.now_bps));
        let floor = budget.map_or(i64::MAX / 2, |b| clamp(b.floor_bps));
        let mut left = total;
        for &i in &order {
            let w = &wants[i];
            if w.paused {
                continue;
            }
            if let Some(q) = lowest(w) {
                let cost = w.layers[q.index()].map_or(0, |l| l.cost_bps) as i64;
                // A first claim (the screen share, the pinned speaker) is
                // never paused for bandwidth, even over budget; nor is a track
                // with one layer: there is nothing lighter to send instead,
                // and going dark is worse than a congested moment (a starved
                // link still pauses it).
                let single = w.layers.iter().flatten().count() == 1;
                if cost <= left || w.first_claim || single {
                    desired[i] = Some(q);
                    left -= cost;
                }
            }
        }
        for &i in &order {
            let w = &wants[i];
            while let Some(cur) = desired[i] {
                let Some(next) = Quality::ALL
                    .into_iter()
                    .filter(|q| *q > cur && *q <= w.quality)
                    .find(|q| w.layers[q.index()].is_some())
                else {
                    break;
                };
                let cost = |q: Quality| w.layers[q.index()].map_or(0, |l| l.cost_bps) as i64;
                let delta = cost(next) - cost(cur);
                let beyond = w.desired.is_none_or(|d| next > d);
                if beyond && w.hold_upgrades {
                    break;
                }
                let fits = if beyond {
                    let margin = (cost(next) as f64 * UPGRADE_MARGIN) as i64;
                    let spent = total - left;
                    delta + margin <= left && spent + delta + margin <= floor
                } else {
                    delta <= left
                };
                if !fits {
                    break;
                }
                desired[i] = Some(next);
                left -= delta;
            }
        }
    }
    wants
        .iter()
        .zip(desired)
        .map(|(w, desired)| Choice {
            desired,
            target: desired.map(|d| {
                // The best layer actually arriving, up to the desired one;
                // none arriving: wait for the desired one (dynacast starts it).
                Quality::ALL
                    .into_iter()
                    .rev()
                    .filter(|q| *q <= d)
                    .find(|q| w.layers[q.index()].is_some_and(|l| l.live))
                    .unwrap_or(d)
            }),
        })
        .collect()
}

/// The lowest layer the track has, preferring one within the wanted quality.
fn lowest(w: &Want) -> Option<Quality> {
    Quality::ALL
        .into_iter()
        .find(|q| w.layers[q.index()].is_some())
}

/// Keeps a subscription's VP8 picture ID and TL0PICIDX continuous across
/// layer switches: each layer numbers its pictures on its own, so after a
/// switch the new layer's numbers are shifted to follow the last ones sent.
#[derive(Debug, Clone, Default)]
pub struct Vp8Rewriter {
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    rebase: bool,
}

const PID_MASK: u16 = 0x7fff;

impl Vp8Rewriter {
    /// The next packet comes from another layer (or source).
    pub fn switch(&mut self) {
        self.rebase = true;
    }

    /// The patch to apply to one forwarded packet, if its fields change.
    pub fn rewrite(&mut self, d: &Vp8Descriptor) -> Option<Vp8Patch> {
        let pid = d.picture_id()?;
        let tl0 = d.tl0_pic_idx();
        if self.rebase {
            self.rebase = false;
            if let Some(last) = self.last_pid {
                self.pid_offset = last.wrapping_add(1).wrapping_sub(pid) & PID_MASK;
            }
            if let (Some(last), Some(t)) = (self.last_tl0, tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(t);
            }
        }
        let out_pid = pid.wrapping_add(self.pid_offset) & PID_MASK;
        let out_tl0 = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        // Remember the newest picture sent (15-bit serial comparison).
        if self
            .last_pid
            .is_none_or(|l| out_pid.wrapping_sub(l) & PID_MASK < 0x4000)
        {
            self.last_pid = Some(out_pid);
            if out_tl0.is_some() {
                self.last_tl0 = out_tl0;
            }
        }
        if self.pid_offset == 0 && self.tl0_offset == 0 {
            return None;
        }
        let build = |pid: u16| {
            let b = d.patch().picture_id(pid);
            match out_tl0 {
                Some(t) => b.tl0_pic_idx(t),
                None => b,
            }
            .build()
        };
        match build(out_pid) {
            Ok(p) => Some(p),
            // A 7-bit picture ID on the wire: keep its width.
            Err(Vp8PatchError::PictureIdTooLarge) => build(out_pid & 0x7f).ok(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(costs: [u64; 3]) -> [Option<LayerOffer>; 3] {
        costs.map(|c| {
            Some(LayerOffer {
                cost_bps: c,
                live: true,
            })
        })
    }

    fn want(first_claim: bool) -> Want {
        Want {
            first_claim,
            paused: false,
            quality: Quality::High,
            layers: layers([150_000, 500_000, 1_500_000]),
            desired: None,
            hold_upgrades: false,
        }
    }

    fn steady(bps: u64) -> Option<Budget> {
        Some(Budget {
            now_bps: bps,
            floor_bps: bps,
        })
    }

    fn desired(c: &[Choice]) -> Vec<Option<Quality>> {
        c.iter().map(|c| c.desired).collect()
    }

    #[test]
    fn without_an_estimate_every_subscription_gets_what_it_asks() {
        let mut small = want(false);
        small.quality = Quality::Low;
        let c = allocate(None, false, &[want(false), small]);
        assert_eq!(desired(&c), [Some(Quality::High), Some(Quality::Low)]);
    }

    #[test]
    fn the_first_claim_is_upgraded_before_the_others() {
        // 2.2 Mbit/s: the pinned tile gets high, the three others low.
        let wants = [want(false), want(true), want(false), want(false)];
        let c = allocate(steady(2_200_000), false, &wants);
        assert_eq!(
            desired(&c),
            [
                Some(Quality::Low),
                Some(Quality::High),
                Some(Quality::Low),
                Some(Quality::Low)
            ]
        );
    }

    #[test]
    fn a_budget_too_small_for_every_lowest_layer_pauses_the_last() {
        let wants = [want(false), want(false), want(false)];
        let c = allocate(steady(320_000), false, &wants);
        assert_eq!(desired(&c), [Some(Quality::Low), Some(Quality::Low), None]);
    }

    #[test]
    fn a_first_claim_keeps_its_lowest_layer_over_budget() {
        let mut screen = want(true);
        screen.layers = [None, None, screen.layers[2]];
        let c = allocate(steady(1_000_000), false, &[want(false), screen]);
        assert_eq!(desired(&c), [None, Some(Quality::High)]);
    }

    #[test]
    fn a_track_without_layers_is_not_paused_for_bandwidth_but_is_when_starved() {
        let mut single = want(false);
        single.layers = [None, None, single.layers[2]];
        let wants = [single.clone(), single];
        let c = allocate(steady(1_000_000), false, &wants);
        assert_eq!(desired(&c), [Some(Quality::High), Some(Quality::High)]);
        let c = allocate(steady(100_000), true, &wants);
        assert_eq!(desired(&c), [None, None]);
    }

    #[test]
    fn paused_subscriptions_cost_nothing() {
        let mut p = want(false);
        p.paused = true;
        let c = allocate(steady(600_000), false, &[p, want(false)]);
        assert_eq!(desired(&c), [None, Some(Quality::Mid)]);
    }

    #[test]
    fn upgrades_need_a_margin_but_keeping_a_layer_does_not() {
        // Mid costs 500k: 520k keeps it, but is not enough to move up to it.
        let mut w = want(false);
        w.quality = Quality::Mid;
        let fresh = allocate(steady(560_000), false, std::slice::from_ref(&w));
        assert_eq!(fresh[0].desired, Some(Quality::Low));
        w.desired = Some(Quality::Mid);
        let kept = allocate(steady(520_000), false, &[w]);
        assert_eq!(kept[0].desired, Some(Quality::Mid));
    }

    #[test]
    fn an_upgrade_must_fit_the_lowest_recent_estimate() {
        let mut w = want(false);
        w.quality = Quality::Mid;
        let swinging = Some(Budget {
            now_bps: 900_000,
            floor_bps: 400_000,
        });
        assert_eq!(
            allocate(swinging, false, std::slice::from_ref(&w))[0].desired,
            Some(Quality::Low)
        );
        w.desired = Some(Quality::Mid);
        assert_eq!(
            allocate(swinging, false, &[w])[0].desired,
            Some(Quality::Mid),
            "kept on the current estimate"
        );
    }

    #[test]
    fn an_oscillating_estimate_does_not_flap_the_layer() {
        // The estimate swings ±10 % around the mid layer's cost, every sample.
        // With the margin and the hold after a downgrade, the layer changes at
        // most twice in 40 samples (each 0.5 s: 20 s).
        let mut w = want(false);
        w.quality = Quality::Mid;
        let mut last_downgrade: Option<usize> = None;
        let mut changes = 0;
        for i in 0..40 {
            let estimate = if i % 2 == 0 { 550_000 } else { 450_000 };
            w.hold_upgrades = last_downgrade.is_some_and(|d| i - d < 8);
            let c = allocate(steady(estimate), false, std::slice::from_ref(&w))[0];
            if c.desired != w.desired {
                changes += 1;
                if c.desired < w.desired {
                    last_downgrade = Some(i);
                }
            }
            w.desired = c.desired;
        }
        assert!(changes <= 2, "{changes} layer changes");
    }

    #[test]
    fn a_starved_subscriber_keeps_only_the_first_claim_at_its_lowest_layer() {
        let wants = [want(false), want(true), want(false)];
        let c = allocate(steady(100_000), true, &wants);
        assert_eq!(desired(&c), [None, Some(Quality::Low), None]);
    }

    #[test]
    fn starvation_has_hysteresis() {
        assert!(is_starved(Some(140_000), false, 150_000));
        assert!(is_starved(Some(170_000), true, 150_000));
        assert!(!is_starved(Some(200_000), true, 150_000));
        assert!(!is_starved(None, true, 150_000));
    }

    #[test]
    fn the_target_is_the_best_live_layer_up_to_the_desired_one() {
        let mut w = want(false);
        w.layers[2] = Some(LayerOffer {
            cost_bps: 1_500_000,
            live: false,
        });
        let c = allocate(None, false, &[w.clone()])[0];
        assert_eq!(c.desired, Some(Quality::High));
        assert_eq!(c.target, Some(Quality::Mid));
        for l in w.layers.iter_mut().flatten() {
            l.live = false;
        }
        let c = allocate(None, false, &[w])[0];
        assert_eq!(c.target, Some(Quality::High), "nothing live: wait for it");
    }

    #[test]
    fn a_single_layer_track_is_forwarded_whatever_quality_is_asked() {
        let mut w = want(false);
        w.layers = [None, None, w.layers[2]];
        w.quality = Quality::Low;
        let c = allocate(None, false, &[w])[0];
        assert_eq!(c.desired, Some(Quality::High));
    }

    #[test]
    fn rids_name_their_layers() {
        assert_eq!(quality_of_rid("q", 0, 3), Quality::Low);
        assert_eq!(quality_of_rid("h", 1, 3), Quality::Mid);
        assert_eq!(quality_of_rid("f", 2, 3), Quality::High);
        assert_eq!(quality_of_rid("a", 0, 2), Quality::Mid);
        assert_eq!(quality_of_rid("b", 1, 2), Quality::High);
        assert_eq!(quality_of_rid("x", 0, 3), Quality::Low);
    }

    /// A VP8 payload with a 15-bit picture ID and TL0PICIDX.
    fn vp8(pid: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90,
            0xe0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x00,
            0x00,
            0,
            0,
        ]
    }

    #[test]
    fn picture_ids_continue_across_a_switch() {
        // The bytes themselves are patched inside str0m; the engine test
        // `layer_switch_waits_for_a_keyframe_and_leaves_no_gap` reads them back.
        let mut r = Vp8Rewriter::default();
        for (pid, tl0) in [(100, 7), (101, 8)] {
            let d = Vp8Descriptor::parse(&vp8(pid, tl0)).unwrap();
            assert!(r.rewrite(&d).is_none(), "nothing to change before a switch");
        }
        r.switch();
        // Another layer numbers its pictures from 9000.
        let d = Vp8Descriptor::parse(&vp8(9000, 200)).unwrap();
        assert!(r.rewrite(&d).is_some(), "a switch rewrites");
        assert_eq!(r.pid_offset, 102u16.wrapping_sub(9000) & PID_MASK);
        assert_eq!(r.tl0_offset, 9u8.wrapping_sub(200));
        assert_eq!(9000u16.wrapping_add(r.pid_offset) & PID_MASK, 102);
    }
}
