use sfu::config::Config;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage:
  sfu [--config FILE] [--set section.key=value]...   run the server
  sfu check-config [FILE] [--set section.key=value]...  check a config and exit
  sfu token --room R --identity I --name N --role host|participant|viewer [--ttl 8h]
            [--title T] [--base URL] [--config FILE] [--set ...]
                                                      mint an access token and print an invite link
                                                      (--title: the meeting's title, shown before joining)

Config layers, later wins: the embedded default, FILE, SFU__SECTION__KEY
environment variables (e.g. SFU__MEDIA__ADVERTISED_IP=203.0.113.7), --set flags.";

#[derive(Default)]
struct TokenArgs {
    room: Option<String>,
    identity: Option<String>,
    name: Option<String>,
    role: Option<String>,
    ttl: Option<String>,
    base: Option<String>,
    title: Option<String>,
}

struct Args {
    check_only: bool,
    token: Option<TokenArgs>,
    config: Option<PathBuf>,
    sets: Vec<String>,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = std::env::args().skip(1).peekable();
    let check_only = args.peek().is_some_and(|a| a == "check-config");
    let token_cmd = args.peek().is_some_and(|a| a == "token");
    if check_only || token_cmd {
        args.next();
    }
    let mut parsed = Args {
        check_only,
        token: token_cmd.then(TokenArgs::default),
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
            "--room" | "--identity" | "--name" | "--role" | "--ttl" | "--base" | "--title"
                if parsed.token.is_some() =>
            {
                let v = value("a value")?;
                let t = parsed.token.as_mut().expect("checked");
                match arg.as_str() {
                    "--room" => t.room = Some(v),
                    "--identity" => t.identity = Some(v),
                    "--name" => t.name = Some(v),
                    "--role" => t.role = Some(v),
                    "--ttl" => t.ttl = Some(v),
                    "--title" => t.title = Some(v),
                    _ => t.base = Some(v),
                }
            }
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
    if let Some(t) = &args.token {
        return mint(&config, t).map(|_| std::process::ExitCode::SUCCESS);
    }
    sfu::logging::init(&config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let failed = runtime.block_on(async {
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
        println!("Web client: {}", server.url());
        if let Some((origin, fingerprint)) = &server.tls {
            println!("TLS certificate: {origin}");
            println!("TLS certificate SHA-256 fingerprint: {fingerprint}");
        }
        // Only the embedded default (a first run on a laptop) gets ready-made
        // links: on a configured server they would put host tokens in the journal.
        if args.config.is_none() && args.sets.is_empty() {
            print_demo_links(&server);
        } else {
            println!("Mint invite links with: sfu token --config FILE --room R --identity I --name N --role host|participant|viewer");
        }
        let (signal, failed) = match wait_for_signal_or_fault(&server.engine).await? {
            Stop::Signal(s) => (s, false),
            Stop::ShardDied(i) => {
                // Its rooms are gone and no room can be placed there safely:
                // exit non-zero so the service manager restarts the server.
                tracing::error!(shard = i, "a shard thread died; exiting for a restart");
                eprintln!("shard {i} died after a fault: exiting for a restart");
                ("shard fault", true)
            }
        };
        let drain = Duration::from_secs(if failed { 2 } else { config.shutdown.drain_secs });
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
        anyhow::Ok(failed)
    })?;
    // Shard threads and lingering tasks end with the process.
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(if failed {
        // EX_SOFTWARE: an internal fault, not a configuration problem.
        std::process::ExitCode::from(70)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// The title the first run's links show before joining.
const DEMO_TITLE: &str = "Phòng họp thử (demo)";

/// Titles are display text: 1–120 characters, no control characters.
const MAX_TITLE_CHARS: usize = 120;

/// The first-run experience: links that work right away, with fresh tokens.
fn print_demo_links(server: &sfu::server::RunningServer) {
    use signaling::auth::{expiry, Claims, Role};
    let ttl = Duration::from_secs(12 * 3600);
    let base = server.url();
    let invite = |identity: &str, name: &str, role: Role| {
        let token = server.auth.sign(&Claims {
            room: "demo".into(),
            sub: identity.into(),
            name: name.into(),
            role,
            exp: expiry(ttl),
            permissions: None,
            title: Some(DEMO_TITLE.into()),
        });
        sfu::tokens::invite_link(&base, "demo", &token)
    };
    let host = invite("demo-host", "Chủ trì", Role::Host);
    let guest = invite("demo-guest", "Khách", Role::Participant);
    println!("Host invite link (12 h):        {host}");
    println!("Participant invite link (12 h): {guest}");
    println!("Open one in each browser tab (add &lang=en for English). More: sfu token --help");
    match server.key_source {
        sfu::tokens::KeySource::Ephemeral => println!("Note: the token key could not be kept in http.data_dir, so these tokens stop working when the server restarts."),
        sfu::tokens::KeySource::DataDir => println!("Token key kept in {}: these links and `sfu token` keep working across restarts.", server.data_dir.join(sfu::tokens::DATA_DIR_KEY).display()),
        _ => {}
    }
}

/// `sfu token`: print a token and an invite link for it.
fn mint(config: &Config, t: &TokenArgs) -> anyhow::Result<()> {
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| anyhow::anyhow!("sfu token needs {flag}\n\n{USAGE}"))
    };
    let room = need(&t.room, "--room")?;
    signaling::protocol::validate_room(&room)
        .map_err(|e| anyhow::anyhow!("--room: {}", e.message))?;
    let identity = need(&t.identity, "--identity")?;
    let name = signaling::protocol::validate_name_max(
        &need(&t.name, "--name")?,
        config.limits.max_name_chars,
    )
    .map_err(|e| anyhow::anyhow!("--name: {}", e.message))?;
    let role_text = need(&t.role, "--role")?;
    let role = signaling::auth::Role::parse(&role_text).ok_or_else(|| {
        anyhow::anyhow!("--role must be host, participant or viewer, not '{role_text}'")
    })?;
    let ttl_text = t.ttl.clone().unwrap_or_else(|| "8h".into());
    let ttl = sfu::tokens::parse_ttl(&ttl_text).ok_or_else(|| {
        anyhow::anyhow!("--ttl '{ttl_text}': use 90s, 30m, 8h or 7d, at most 30d")
    })?;
    let title = match &t.title {
        Some(text) => {
            let text = text.trim();
            let chars = text.chars().count();
            if chars == 0 || chars > MAX_TITLE_CHARS || text.chars().any(char::is_control) {
                anyhow::bail!("--title: 1 to {MAX_TITLE_CHARS} characters, no control characters");
            }
            Some(text.to_owned())
        }
        None => None,
    };
    let (auth, source) = sfu::tokens::build_auth(
        &config.auth,
        std::env::var("SFU_TOKEN_KEY").ok(),
        &config.http.data_dir,
    )?;
    if source == sfu::tokens::KeySource::Ephemeral {
        anyhow::bail!(
            "no token key: set auth.key_file in the config (or SFU_TOKEN_KEY) to the server's key, or make http.data_dir writable"
        );
    }
    let token = auth.sign(&signaling::auth::Claims {
        room: room.clone(),
        sub: identity,
        name,
        role,
        exp: signaling::auth::expiry(ttl),
        permissions: None,
        title,
    });
    let base = t.base.clone().unwrap_or_else(|| {
        let a = config.http.listen;
        let host = if a.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            a.ip().to_string()
        };
        let scheme = if sfu::tls::enabled(&config.http) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}:{}/", a.port())
    });
    println!("token: {token}");
    println!(
        "invite link: {}",
        sfu::tokens::invite_link(&base, &room, &token)
    );
    Ok(())
}

enum Stop {
    Signal(&'static str),
    ShardDied(usize),
}

/// Until SIGTERM/SIGINT, or until a shard thread dies.
async fn wait_for_signal_or_fault(engine: &sfu::engine::Engine) -> anyhow::Result<Stop> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(Stop::Signal("SIGTERM")),
            _ = int.recv() => return Ok(Stop::Signal("SIGINT")),
            _ = check.tick() => {
                if let Some(i) = engine.dead_shard() {
                    return Ok(Stop::ShardDied(i));
                }
            }
        }
    }
}
