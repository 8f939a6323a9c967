//! Wiring: the media engine, the signaling registry and the HTTP server.

use crate::config::Config;
use crate::engine::Engine;
use signaling::http::{router, AppState};
use signaling::registry::Registry;
use signaling::room::RoomLimits;
use signaling::session::{SessionConfig, ShutdownNotice};
use signaling::telemetry::SignalingMetrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct RunningServer {
    pub http_addr: SocketAddr,
    /// With HTTPS: where the certificate came from, and its SHA-256 fingerprint.
    pub tls: Option<(String, String)>,
    /// Signs invite tokens; the same key verifies joins.
    pub auth: Arc<signaling::auth::Auth>,
    pub key_source: crate::tokens::KeySource,
    /// `http.data_dir`: the self-signed certificate and, without another key, the token key.
    pub data_dir: std::path::PathBuf,
    shutdown: tokio::sync::watch::Sender<Option<ShutdownNotice>>,
    pub signaling_metrics: Arc<SignalingMetrics>,
    /// Where Prometheus scrapes `/metrics`.
    pub metrics_addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub registry: Arc<Registry>,
    task: tokio::task::JoinHandle<()>,
    metrics_task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The URL to open in a browser.
    pub fn url(&self) -> String {
        let host = if self.http_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.http_addr.ip().to_string()
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{}/", self.http_addr.port())
    }

    /// Stop taking joins (`/readyz` turns 503) and tell every connected
    /// client to reconnect after `retry_after`.
    pub fn begin_shutdown(&self, reason: &str, retry_after: Duration) {
        let _ = self.shutdown.send(Some(ShutdownNotice {
            reason: reason.to_string(),
            retry_after,
        }));
    }

    /// Wait until every websocket has closed, or `bound` has passed.
    /// Returns the connections still open.
    pub async fn drain(&self, bound: Duration) -> i64 {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let open = self.signaling_metrics.connections.get();
            if open <= 0 || tokio::time::Instant::now() >= deadline {
                return open.max(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn abort(&self) {
        self.task.abort();
        self.metrics_task.abort();
    }
}

pub async fn start(config: &Config) -> anyhow::Result<RunningServer> {
    let prometheus = prometheus::Registry::new();
    let engine = Engine::start(
        &config.media,
        crate::engine::stats::LinkMetrics::new(&prometheus),
    )?;
    let ping_interval = Duration::from_secs(config.signaling.ping_interval_secs);
    let signaling_metrics = SignalingMetrics::new(&prometheus);
    let registry = Registry::new(
        engine.clone(),
        RoomLimits {
            max_participants: config.signaling.max_participants_per_room,
            ping_interval,
            max_tracks_per_participant: config.limits.max_tracks_per_participant,
            max_sdp_bytes: config.limits.max_sdp_bytes,
            simulcast: config.simulcast.clone(),
        },
        config.limits.max_rooms,
        signaling_metrics.clone(),
    );
    let (auth, key_source) = crate::tokens::build_auth(
        &config.auth,
        std::env::var("SFU_TOKEN_KEY").ok(),
        &config.http.data_dir,
    )?;
    if auth.allow_tokenless {
        tracing::warn!("DEVELOPMENT MODE: auth.allow_tokenless = true, anyone who knows a room name can join it");
    }
    let auth = Arc::new(auth);
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(None);
    let media_ready = {
        let engine = engine.clone();
        Arc::new(move || engine.health())
    };
    let state = AppState {
        registry: registry.clone(),
        session: SessionConfig {
            ping_interval,
            dead_after: Duration::from_secs(config.signaling.dead_after_secs),
            max_name_chars: config.limits.max_name_chars,
            messages_per_sec: config.limits.messages_per_sec,
            message_burst: config.limits.message_burst,
        },
        auth: auth.clone(),
        connections: signaling::http::ConnectionLimit::new(config.limits.max_connections_per_ip),
        max_message_bytes: config.signaling.max_message_bytes,
        metrics: signaling_metrics.clone(),
        shutdown: shutdown_rx.clone(),
        media_ready,
    };
    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let tls = if crate::tls::enabled(&config.http) {
        Some(crate::tls::load_or_create(
            &config.http,
            config.media.advertised_ip,
        )?)
    } else {
        None
    };
    let task = match &tls {
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "http server stopped");
            }
        }),
        Some(material) => {
            // One rustls provider for the process: aws-lc-rs, as str0m uses.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let rustls_config = axum_server::tls_rustls::RustlsConfig::from_pem(
                material.cert_pem.clone().into_bytes(),
                material.key_pem.clone().into_bytes(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("TLS certificate or key unusable: {e}"))?;
            let std_listener = listener.into_std()?;
            let server = axum_server::from_tcp_rustls(std_listener, rustls_config);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app).await {
                    tracing::error!(error = %e, "https server stopped");
                }
            })
        }
    };
    let metrics_listener = TcpListener::bind(config.metrics.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.metrics.listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let ready_check = {
        let engine = engine.clone();
        Box::new(move || shutdown_rx.borrow().is_none() && engine.health().is_ok())
    };
    let metrics_app = crate::metrics::router(crate::metrics::Metrics::new(
        engine.clone(),
        prometheus,
        ready_check,
    ));
    let metrics_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(RunningServer {
        tls: tls.map(|t| (t.origin, t.fingerprint)),
        auth,
        key_source,
        data_dir: config.http.data_dir.clone(),
        shutdown,
        signaling_metrics,
        http_addr,
        metrics_addr,
        metrics_task,
        engine,
        registry,
        task,
    })
}
