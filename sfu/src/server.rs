//! Wiring: the media engine, the signaling registry and the HTTP server.

use crate::config::Config;
use crate::engine::Engine;
use signaling::http::{router, AppState};
use signaling::registry::Registry;
use signaling::room::RoomLimits;
use signaling::session::SessionConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub registry: Arc<Registry>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The URL to open in a browser.
    pub fn url(&self) -> String {
        let host = if self.http_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.http_addr.ip().to_string()
        };
        format!("http://{host}:{}/", self.http_addr.port())
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

pub async fn start(config: &Config) -> anyhow::Result<RunningServer> {
    let engine = Engine::start(&config.media)?;
    let ping_interval = Duration::from_secs(config.signaling.ping_interval_secs);
    let registry = Registry::new(
        engine.clone(),
        RoomLimits {
            max_participants: config.signaling.max_participants_per_room,
            ping_interval,
        },
    );
    let state = AppState {
        registry: registry.clone(),
        session: SessionConfig {
            ping_interval,
            dead_after: Duration::from_secs(config.signaling.dead_after_secs),
        },
        max_message_bytes: config.signaling.max_message_bytes,
    };
    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    Ok(RunningServer {
        http_addr,
        engine,
        registry,
        task,
    })
}
