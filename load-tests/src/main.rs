//! `loadtest`: simulated sites (webrtc-rs clients) against a real `sfu`
//! process, measuring what subscribers receive and what the server spends.
//! See docs/benchmarks.md for the method and the latest numbers.

mod floor;
mod measure;
mod media;
mod netcap;
mod participant;
mod report;
mod scenario;
mod server;
mod webrtc_client;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use media::VideoSpec;
use participant::View;
use scenario::{Common, Plan, SiteOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Load tests and the floor benchmark for the sfu"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
struct CommonArgs {
    /// Bound on each step (ramp-up, settling, measuring), in seconds.
    #[arg(long, default_value_t = 20.0, global = true)]
    duration: f64,
    /// Participants started per second.
    #[arg(long, default_value_t = 10.0, global = true)]
    ramp: f64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30, global = true)]
    fps: u32,
    /// Video bitrate per camera, kbit/s.
    #[arg(long, default_value_t = 1000, global = true)]
    bitrate_kbps: u32,
    /// Seconds between periodic keyframes (PLI/FIR also trigger one).
    #[arg(long, default_value_t = 3, global = true)]
    keyframe_interval: u32,
    /// Shard threads in the spawned server.
    #[arg(long, default_value_t = 1, global = true)]
    shards: usize,
    /// The sfu binary to spawn (default: next to this one).
    #[arg(long, global = true)]
    sfu_bin: Option<PathBuf>,
    /// Use a running server's HTTP address instead of spawning one (needs --metrics).
    #[arg(long, global = true, requires = "metrics")]
    server: Option<SocketAddr>,
    /// The running server's metrics address.
    #[arg(long, global = true)]
    metrics: Option<SocketAddr>,
    /// Skip the floor relay comparison.
    #[arg(long, global = true)]
    no_floor: bool,
    /// Where the JSON report and the SVG plot go.
    #[arg(long, default_value = "target/loadtest", global = true)]
    out: PathBuf,
    /// No progress line.
    #[arg(long, global = true)]
    quiet: bool,
    /// Publish cameras as the simulcast layers the server's `joined.simulcast`
    /// lists (q/h/f: low/mid/high), each with the mid and rid extensions.
    #[arg(long, global = true)]
    simulcast: bool,
    /// Simulcast layer bitrates low,mid,high in kbit/s (default: each layer's
    /// max_kbps from the server, 150,500,1500 by default).
    #[arg(long, global = true, value_delimiter = ',', num_args = 3)]
    layer_kbps: Option<Vec<u32>>,
    /// How subscribers show video: grid (every tile high, as before), or
    /// speaker (the chair's camera pinned high, --small-tiles at low, the rest paused).
    #[arg(long, global = true, value_enum, default_value_t = ViewArg::Grid)]
    view: ViewArg,
    /// Small tiles in the speaker view.
    #[arg(long, global = true, default_value_t = 8)]
    small_tiles: usize,
    /// Put this many subscribing sites (the last ones) behind a kernel-shaped
    /// link: a network namespace and veth with tc tbf and an nftables random
    /// drop. Needs root and a private network namespace (unshare -n).
    #[arg(long, global = true, default_value_t = 0)]
    capped_sites: usize,
    /// The capped sites' downlink rate, kbit/s.
    #[arg(long, global = true, default_value_t = 800)]
    cap_kbps: u32,
    /// Only the first N participants (the chair first) publish a microphone;
    /// the rest are muted sites that send no audio. Default: all.
    #[arg(long, global = true)]
    mics: Option<usize>,
    /// The capped sites' random loss of incoming UDP, percent.
    #[arg(long, global = true, default_value_t = 1.0)]
    cap_loss_pct: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ViewArg {
    Grid,
    Speaker,
}

#[derive(Subcommand)]
enum Scenario {
    /// 1 publisher (camera + microphone) to N subscribers; one step per N.
    Fanout {
        #[arg(long, value_delimiter = ',', default_value = "1,5,10,20,40")]
        subscribers: Vec<usize>,
    },
    /// A chair and N sites, all publishing, everyone receiving everyone.
    Briefing {
        #[arg(long, value_delimiter = ',', default_value = "10,20")]
        sites: Vec<usize>,
    },
    /// 3-5 doctors with cameras, one also sharing a high-bitrate screen.
    Consult {
        #[arg(long, default_value_t = 4)]
        doctors: usize,
        /// Screen share bitrate, kbit/s (at 15 fps).
        #[arg(long, default_value_t = 4000)]
        screen_kbps: u32,
    },
    /// M concurrent rooms of K participants each.
    Rooms {
        #[arg(long, default_value_t = 4)]
        rooms: usize,
        #[arg(long, default_value_t = 4)]
        per_room: usize,
    },
    /// N participants in a room; the oldest leaves and a new one joins continuously.
    Churn {
        #[arg(long, default_value_t = 6)]
        participants: usize,
        /// Rooms the participants are spread over (by index; newcomers round-robin).
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Milliseconds between one leave+join and the next.
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let a = &cli.common;
    if a.duration <= 0.0 || a.duration > 3600.0 {
        bail!("--duration must be in (0, 3600] seconds");
    }
    let video = VideoSpec {
        fps: a.fps.clamp(1, 120),
        bitrate_kbps: a.bitrate_kbps.max(10),
        keyframe_interval_s: a.keyframe_interval,
    };
    let common = Common {
        duration: Duration::from_secs_f64(a.duration),
        ramp: a.ramp,
        video,
        shards: a.shards,
        sfu_bin: a.sfu_bin.clone(),
        external: a.server.zip(a.metrics),
        floor: !a.no_floor,
        quiet: a.quiet,
    };
    let (name, x_label, plans): (&str, &str, Vec<Plan>) = match &cli.scenario {
        Scenario::Fanout { subscribers } => (
            "fanout",
            "subscribers",
            subscribers
                .iter()
                .map(|n| scenario::fanout(*n, video))
                .collect(),
        ),
        Scenario::Briefing { sites } => (
            "briefing",
            "sites (each receives every other)",
            sites
                .iter()
                .map(|n| scenario::briefing(*n, video))
                .collect(),
        ),
        Scenario::Consult {
            doctors,
            screen_kbps,
        } => {
            if !(2..=8).contains(doctors) {
                bail!("--doctors must be 2-8");
            }
            let screen = VideoSpec {
                fps: 15,
                bitrate_kbps: *screen_kbps,
                keyframe_interval_s: video.keyframe_interval_s,
            };
            (
                "consult",
                "doctors",
                vec![scenario::consult(*doctors, video, screen)],
            )
        }
        Scenario::Rooms { rooms, per_room } => (
            "rooms",
            "participants",
            vec![scenario::rooms(*rooms, *per_room, video)],
        ),
        Scenario::Churn {
            participants,
            rooms,
            every_ms,
        } => (
            "churn",
            "participants",
            vec![scenario::churn(
                *participants,
                *rooms,
                Duration::from_millis(*every_ms),
                video,
            )],
        ),
    };

    if a.capped_sites > netcap::MAX_CAPPED {
        bail!("--capped-sites must be at most {}", netcap::MAX_CAPPED);
    }
    if !(0.0..=100.0).contains(&a.cap_loss_pct) {
        bail!("--cap-loss-pct must be 0-100");
    }
    let options = SiteOptions {
        simulcast: a.simulcast,
        layer_kbps: a.layer_kbps.as_ref().map(|v| [v[0], v[1], v[2]]),
        view: (a.view == ViewArg::Speaker).then_some(View::Speaker {
            small: a.small_tiles,
        }),
        capped: a.capped_sites,
        mics: a.mics,
        cap: Some(netcap::Cap {
            kbps: a.cap_kbps,
            loss_pct: a.cap_loss_pct,
        }),
    };
    let mut plans = plans;
    for plan in &mut plans {
        options.apply(plan);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let steps = runtime.block_on(async {
        let mut steps = Vec::new();
        for plan in &plans {
            steps.push(scenario::run_step(&common, plan).await?);
        }
        anyhow::Ok(steps)
    })?;
    // webrtc-rs tasks may linger after close; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(2));

    print!("{}", report::table(&steps));
    for s in &steps {
        for e in s.errors.iter().take(5) {
            eprintln!("{}: {e}", s.label);
        }
        for e in s.without_media_examples.iter().take(5) {
            eprintln!("{}: no media: {e}", s.label);
        }
    }
    std::fs::create_dir_all(&a.out)?;
    let json = a.out.join(format!("{name}.json"));
    let svg = a.out.join(format!("{name}.svg"));
    report::write_json(
        &json,
        &report::Report {
            tool: "loadtest",
            date_unix_s: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
            machine: report::Machine::this(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            steps: &steps,
        },
    )?;
    report::write_svg(&svg, name, x_label, &steps)?;
    println!("report: {}  plot: {}", json.display(), svg.display());
    if steps.iter().any(|s| s.received_packets == 0) {
        bail!("a step received no media at all");
    }
    Ok(())
}
