use sfu::config::Config;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage:
  sfu [--config FILE] [--set section.key=value]...   run the server
  sfu check-config [FILE] [--set section.key=value]...  check a config and exit

Config layers, later wins: the embedded default, FILE, SFU__SECTION__KEY
environment variables (e.g. SFU__MEDIA__ADVERTISED_IP=203.0.113.7), --set flags.";

struct Args {
    check_only: bool,
    config: Option<PathBuf>,
    sets: Vec<String>,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = std::env::args().skip(1).peekable();
    let check_only = args.peek().is_some_and(|a| a == "check-config");
    if check_only {
        args.next();
    }
    let mut parsed = Args {
        check_only,
        config: None,
        sets: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs {what}\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--config" | "-c" => parsed.config = Some(value("a file")?.into()),
            "--set" => parsed.sets.push(value("section.key=value")?),
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            file if check_only && !file.starts_with('-') && parsed.config.is_none() => {
                parsed.config = Some(file.into())
            }
            other => anyhow::bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    Ok(Some(parsed))
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sfu: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<std::process::ExitCode> {
    let Some(args) = parse_args()? else {
        return Ok(std::process::ExitCode::SUCCESS);
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = Config::load_layered(args.config.as_deref(), &env, &args.sets);
    if args.check_only {
        let name = args
            .config
            .as_ref()
            .map_or("embedded default".to_string(), |p| p.display().to_string());
        return Ok(match loaded {
            Ok(_) => {
                println!("{name}: ok");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        });
    }
    let config = loaded?;
    sfu::logging::init(&config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = sfu::server::start(&config).await?;
        let media: Vec<String> = server
            .engine
            .media_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        println!(
            "sfu listening: http {} · media udp {} · metrics http://{}/metrics",
            server.http_addr,
            media.join(", "),
            server.metrics_addr
        );
        println!(
            "Open {}?room=demo&name=Guest to join a room (add &lang=en for English).",
            server.url()
        );
        let signal = wait_for_signal().await?;
        let drain = Duration::from_secs(config.shutdown.drain_secs);
        tracing::info!(
            signal,
            drain_secs = drain.as_secs(),
            "shutting down: no new joins"
        );
        println!(
            "{signal}: shutting down, draining for up to {} s",
            drain.as_secs()
        );
        server.begin_shutdown(
            "restart",
            Duration::from_millis(config.shutdown.retry_after_ms),
        );
        let left = server.drain(drain).await;
        tracing::info!(connections_left = left, "drained");
        println!("stopped ({left} connections still open)");
        anyhow::Ok(())
    })?;
    // Shard threads and lingering tasks end with the process.
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(std::process::ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
