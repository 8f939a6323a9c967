use sfu::config::Config;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: sfu [--config FILE]\n\nRuns the SFU on the embedded default config, overridden by FILE if given.";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config_path = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--config needs a file\n\n{USAGE}"))?
                        .into(),
                )
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    let config = Config::load(config_path.as_deref())?;
    let filter =
        EnvFilter::try_from_env("SFU_LOG").unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).init();

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
            "sfu listening: http {} · media udp {}",
            server.http_addr,
            media.join(", ")
        );
        println!(
            "Open {}?room=demo&name=Guest to join a room (add &lang=en for English).",
            server.url()
        );
        tokio::signal::ctrl_c().await?;
        println!("shutting down");
        Ok(())
    })
}
