//! Output: a table on stdout, a JSON report and an SVG plot.

use crate::scenario::{reasons, StepResult};
use anyhow::Result;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub tool: &'static str,
    pub date_unix_s: u64,
    pub machine: Machine,
    pub command: String,
    pub steps: &'a [StepResult],
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

pub fn table(steps: &[StepResult]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<26} {:>9} {:>7} {:>13} {:>5} {:>5} {:>21} {:>7} {:>8} {:>13} {:>9} {:>8} {:>8} {:>8} {:>7} {:>6} {:>4} {:>8} {:>12}\n",
        "step", "received", "loss%", "rcvbuf sfu/all", "dup", "reord", "latency p50/95/99 ms", "jit ms", "vid kbps",
        "1st pkt/key", "fwd/s", "sfu µs", "sfu cpu%", "gen cpu%", "floor×", "KiB/p", "err", "no media", "shards fwd%"
    ));
    for s in steps {
        out.push_str(&format!(
            "{:<26} {:>9} {:>7.3} {:>13} {:>5} {:>5} {:>21} {:>7.2} {:>8.0} {:>13} {:>9.0} {:>8.2} {:>8.1} {:>8.1} {:>7} {:>6.0} {:>4} {:>8} {:>12}\n",
            s.label,
            s.received_packets,
            s.loss_percent,
            format!("{}/{}", s.sfu_socket_drops, s.udp_rcvbuf_drops),
            s.duplicates,
            s.reordered,
            format!("{:.1}/{:.1}/{:.1}", s.latency_ms_p50, s.latency_ms_p95, s.latency_ms_p99),
            s.jitter_ms_mean,
            s.video_kbps_mean,
            format!("{:.0}/{:.0}", s.first_packet_ms_p50, s.first_keyframe_ms_p50),
            s.sfu_forwarded_per_s,
            s.sfu_us_per_copy,
            s.sfu_process_cpu_percent,
            s.loadgen_cpu_percent,
            s.floor_ratio.map_or("-".to_owned(), |r| format!("{r:.1}")),
            s.sfu_rss_per_participant_kib,
            s.errors.len(),
            format!("{}/{}", s.members_without_media, s.members_checked),
            shards(s),
        ));
    }
    out.push_str("\nramp (first start → measured window: joins negotiated while media flows) vs the window; ramp flowing: tracks received ≥ 1 s\n");
    out.push_str(&format!(
        "{:<26} {:>7} {:>10} {:>26} {:>26} {:>26} {:>17} {:>17} {:>16}\n",
        "step",
        "ramp s",
        "ramp pkts",
        "ramp lat p50/99/max ms",
        "ramp flowing p50/99/max",
        "window lat p50/99/max ms",
        "ramp cpu sfu/gen%",
        "win cpu sfu/gen%",
        "shard busy% r/w"
    ));
    for s in steps {
        out.push_str(&format!(
            "{:<26} {:>7.2} {:>10} {:>26} {:>26} {:>26} {:>17} {:>17} {:>16}\n",
            s.label,
            s.ramp_s,
            s.ramp_latency_samples,
            format!(
                "{:.1}/{:.1}/{:.1}",
                s.ramp_latency_ms_p50, s.ramp_latency_ms_p99, s.ramp_latency_ms_max
            ),
            format!(
                "{:.1}/{:.1}/{:.1}",
                s.ramp_flowing_latency_ms_p50,
                s.ramp_flowing_latency_ms_p99,
                s.ramp_flowing_latency_ms_max
            ),
            format!(
                "{:.1}/{:.1}/{:.1}",
                s.latency_ms_p50, s.latency_ms_p99, s.latency_ms_max
            ),
            format!(
                "{:.0}/{:.0}",
                s.ramp_sfu_process_cpu_percent, s.ramp_loadgen_cpu_percent
            ),
            format!(
                "{:.0}/{:.0}",
                s.sfu_process_cpu_percent, s.loadgen_cpu_percent
            ),
            format!(
                "{:.0}/{:.0}",
                s.ramp_sfu_shard_busy_percent, s.sfu_shard_busy_percent
            ),
        ));
    }
    for s in steps {
        out.push_str(&format!(
            "{}: sfu drops by reason: window {} · ramp {}\n",
            s.label,
            reasons(&s.sfu_drops_by_reason),
            reasons(&s.ramp_sfu_drops_by_reason),
        ));
    }
    out.push_str(&format!(
        "no media: members that got no packet of some track of another member of their room while together ≥ {:.0} s / members checked\n",
        steps.first().map_or(0.0, |s| s.together_min_s)
    ));
    for s in steps.iter().filter(|s| !s.sites.is_empty()) {
        out.push_str(&sites_table(s));
    }
    out
}

/// One row per subscribing site, then the uncapped and capped sites' worst.
fn sites_table(s: &StepResult) -> String {
    let mut out = format!(
        "\n{}: per site, measured window (downlink = payload kbit/s over 1 s windows; wire ≈ + {} B/packet){}\n",
        s.label,
        crate::scenario::WIRE_OVERHEAD,
        s.cap.map_or(String::new(), |c| format!(
            "; capped: {} kbit/s tbf + {} % nft drop",
            c.kbps, c.loss_pct
        )),
    );
    out.push_str(&format!(
        "{:<12} {:>6} {:>17} {:>17} {:>6} {:>11} {:>20} {:>7} {:>8} {:>8} {:>11} {:>6} {:>8} {:>13}\n",
        "site",
        "capped",
        "down kbps mean/max",
        "wire kbps mean/max",
        "videos",
        "tiles p/s/x",
        "layer pkts low/mid/hi",
        "paused",
        "loss%",
        "freezes",
        "longest gap",
        "switch",
        "p99 ms",
        "mics med/max"
    ));
    for site in &s.sites {
        out.push_str(&format!(
            "{:<12} {:>6} {:>17} {:>17} {:>6} {:>11} {:>20} {:>7} {:>8.3} {:>8} {:>11.0} {:>6} {:>8.1} {:>13}\n",
            site.name,
            if site.capped { "yes" } else { "-" },
            format!("{:.0}/{:.0}", site.downlink_kbps_mean, site.downlink_kbps_max),
            format!("{:.0}/{:.0}", site.wire_kbps_mean, site.wire_kbps_max),
            site.video_tracks,
            format!("{}/{}/{}", site.tiles.0, site.tiles.1, site.tiles.2),
            format!(
                "{}/{}/{}",
                site.layer_packets[0], site.layer_packets[1], site.layer_packets[2]
            ),
            site.paused_tile_packets,
            site.loss_percent,
            site.freezes,
            site.longest_gap_ms,
            site.layer_switches,
            site.latency_ms_p99,
            format!("{}/{}", site.audio_streams_median, site.audio_streams_max),
        ));
    }
    for capped in [false, true] {
        let group: Vec<_> = s.sites.iter().filter(|x| x.capped == capped).collect();
        if group.is_empty() {
            continue;
        }
        let max = |f: &dyn Fn(&crate::scenario::SiteResult) -> f64| {
            group.iter().map(|x| f(x)).fold(0.0, f64::max)
        };
        out.push_str(&format!(
            "{} sites ({}): down kbps mean {:.0}–{:.0}, max 1 s {:.0} (wire ≈ {:.0}/{:.0}); loss ≤ {:.3} %; freezes {} (longest gap {:.0} ms); switches {}; p99 ≤ {:.1} ms; paused-tile packets {}; microphones heard at once (per 100 ms) ≤ {} (median ≤ {}), audio ≤ {:.0} kbit/s\n",
            if capped { "capped" } else { "uncapped" },
            group.len(),
            group.iter().map(|x| x.downlink_kbps_mean).fold(f64::MAX, f64::min),
            max(&|x| x.downlink_kbps_mean),
            max(&|x| x.downlink_kbps_max),
            max(&|x| x.wire_kbps_mean),
            max(&|x| x.wire_kbps_max),
            max(&|x| x.loss_percent),
            group.iter().map(|x| x.freezes).sum::<u64>(),
            max(&|x| x.longest_gap_ms),
            group.iter().map(|x| x.layer_switches).sum::<u64>(),
            max(&|x| x.latency_ms_p99),
            group.iter().map(|x| x.paused_tile_packets).sum::<u64>(),
            group.iter().map(|x| x.audio_streams_max).max().unwrap_or(0),
            group.iter().map(|x| x.audio_streams_median).max().unwrap_or(0),
            max(&|x| x.audio_kbps_mean),
        ));
    }
    out.push_str(&format!(
        "dynacast: publish_layers {} · layer stops {} · restarts {} · starved notices {} · sfu layer switches {} · sfu video kB by layer {} · sfu downlink estimate mean {:.0} kbit/s ({:.0} samples)\n",
        s.publish_layers_msgs,
        s.layer_stops,
        s.layer_starts,
        s.starved_notices,
        reasons(&s.sfu_layer_switches),
        reasons(&s.sfu_video_kbytes_by_layer),
        s.sfu_estimate_kbps_mean,
        s.sfu_estimate_samples,
    ));
    out
}

/// "2 48/52": the spawned server's shards and each one's share of the copies.
fn shards(s: &StepResult) -> String {
    let n = s.shards.map_or("-".to_owned(), |n| n.to_string());
    let total: f64 = s.sfu_forwarded_by_shard.values().sum();
    if s.sfu_forwarded_by_shard.len() < 2 || total <= 0.0 {
        return n;
    }
    let shares: Vec<String> = s
        .sfu_forwarded_by_shard
        .values()
        .map(|v| format!("{:.0}", 100.0 * v / total))
        .collect();
    format!("{n} {}", shares.join("/"))
}

pub fn write_json(path: &Path, report: &Report<'_>) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(report)?)?;
    Ok(())
}

/// Two panels against the step's x: CPU per forwarded copy (SFU shards, and
/// the floor relay), and receiver-side loss.
pub fn write_svg(path: &Path, title: &str, x_label: &str, steps: &[StepResult]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(380);
    let xs: Vec<f64> = steps.iter().map(|s| s.x as f64).collect();
    let x_max = xs.iter().copied().fold(1.0, f64::max) * 1.05;
    let cpu_max = steps
        .iter()
        .flat_map(|s| {
            [
                s.sfu_us_per_copy,
                s.floor.as_ref().map_or(0.0, |f| f.us_per_copy),
            ]
        })
        .fold(1.0, f64::max)
        * 1.15;
    let mut cpu = ChartBuilder::on(&top)
        .caption(
            format!("{title}: CPU µs per forwarded copy"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..cpu_max)?;
    cpu.configure_mesh()
        .x_desc(x_label)
        .y_desc("µs / copy")
        .draw()?;
    let sfu: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.x as f64, s.sfu_us_per_copy))
        .collect();
    cpu.draw_series(LineSeries::new(sfu.clone(), &RED))?
        .label("SFU shard threads")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    cpu.draw_series(sfu.iter().map(|p| Circle::new(*p, 4, RED.filled())))?;
    let floor: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| s.floor.as_ref().map(|f| (s.x as f64, f.us_per_copy)))
        .collect();
    if !floor.is_empty() {
        cpu.draw_series(LineSeries::new(floor.clone(), &BLUE))?
            .label("floor relay (SRTP + sendto)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        cpu.draw_series(floor.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))?;
    }
    cpu.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let loss_max = steps.iter().map(|s| s.loss_percent).fold(0.1, f64::max) * 1.2;
    let mut loss = ChartBuilder::on(&bottom)
        .caption("Receiver loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..loss_max)?;
    loss.configure_mesh()
        .x_desc(x_label)
        .y_desc("loss %")
        .draw()?;
    let points: Vec<(f64, f64)> = steps.iter().map(|s| (s.x as f64, s.loss_percent)).collect();
    loss.draw_series(LineSeries::new(points.clone(), &GREEN))?;
    loss.draw_series(points.iter().map(|p| Circle::new(*p, 4, GREEN.filled())))?;
    root.present()?;
    Ok(())
}
