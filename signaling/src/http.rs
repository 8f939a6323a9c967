//! HTTP routes: the web client, the websocket endpoint and `/healthz`.

use crate::auth::Auth;
use crate::registry::Registry;
use crate::session::{self, SessionConfig, SessionContext, ShutdownNotice};
use crate::telemetry::SignalingMetrics;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;

/// The browser client, embedded in the binary so the server runs from one file.
#[derive(rust_embed::Embed)]
#[folder = "../web-client/public/"]
struct WebClient;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub session: SessionConfig,
    pub max_message_bytes: usize,
    pub metrics: Arc<SignalingMetrics>,
    /// `Some` once the server is shutting down.
    pub shutdown: tokio::sync::watch::Receiver<Option<ShutdownNotice>>,
    /// Whether the media side can take joins (shards alive, sockets bound).
    pub media_ready: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    pub auth: Arc<Auth>,
    pub connections: ConnectionLimit,
}

/// Open websockets per client address, with a cap.
#[derive(Clone)]
pub struct ConnectionLimit {
    per_ip: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Holds one connection's place; gives it back when dropped.
pub struct ConnectionSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionLimit {
    pub fn new(per_ip: usize) -> Self {
        Self {
            per_ip,
            open: Default::default(),
        }
    }

    /// A place for one more connection from `ip`, if it has fewer than the cap.
    pub fn acquire(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(get(static_file))
        .with_state(state)
}

async fn websocket(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> Response {
    let slot = state.connections.acquire(peer.ip());
    let ctx = SessionContext {
        registry: state.registry.clone(),
        auth: state.auth.clone(),
        config: state.session.clone(),
        metrics: state.metrics.clone(),
        shutdown: state.shutdown.clone(),
    };
    ws.max_message_size(state.max_message_bytes)
        .max_frame_size(state.max_message_bytes)
        .on_upgrade(move |socket| async move {
            match slot {
                Some(_slot) => session::run(socket, ctx).await,
                None => session::refuse(socket, ctx.metrics, session::too_many_connections()).await,
            }
        })
}

/// Ready for joins: the media side is up and the server is not draining.
async fn readyz(State(state): State<AppState>) -> Response {
    let problem = if state.shutdown.borrow().is_some() {
        Some("draining".to_string())
    } else {
        (state.media_ready)().err()
    };
    let json = [(header::CONTENT_TYPE, "application/json")];
    match problem {
        None => (StatusCode::OK, json, "{\"status\":\"ready\"}".to_string()).into_response(),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            serde_json::json!({"status": "not_ready", "reason": p}).to_string(),
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let body = format!(
        "{{\"status\":\"ok\",\"rooms\":{}}}",
        state.registry.room_count()
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match WebClient::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_string()),
                    (header::CACHE_CONTROL, "no-cache".to_string()),
                ],
                file.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
