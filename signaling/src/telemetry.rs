//! Signaling's Prometheus metrics. Every label comes from a closed set (a
//! message type or an error code), never from rooms, names or addresses.

use crate::protocol::ErrorCode;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

pub struct SignalingMetrics {
    pub connections: IntGauge,
    pub connections_total: IntCounter,
    messages: IntCounterVec,
    errors: IntCounterVec,
    join_duration: Histogram,
    pub joins_total: IntCounter,
}

/// Label values for client messages: the protocol's types plus `invalid`.
pub const MESSAGE_TYPES: [&str; 8] = [
    "join",
    "offer",
    "mute",
    "moderate",
    "update_subscription",
    "pong",
    "leave",
    "invalid",
];

impl SignalingMetrics {
    pub fn new(registry: &Registry) -> Arc<Self> {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("unique metric name");
            c
        }
        let m = Self {
            connections: reg(
                registry,
                IntGauge::new("sfu_ws_connections", "Open signaling websockets").unwrap(),
            ),
            connections_total: reg(
                registry,
                IntCounter::new("sfu_ws_connections_total", "Signaling websockets accepted")
                    .unwrap(),
            ),
            messages: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "sfu_signaling_messages_total",
                        "Client messages received, by type",
                    ),
                    &["type"],
                )
                .unwrap(),
            ),
            errors: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "sfu_signaling_errors_total",
                        "Error messages sent to clients, by code",
                    ),
                    &["code"],
                )
                .unwrap(),
            ),
            join_duration: reg(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "sfu_join_duration_seconds",
                        "From websocket open to the participant's media connected",
                    )
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
                )
                .unwrap(),
            ),
            joins_total: reg(
                registry,
                IntCounter::new("sfu_joins_total", "Participants admitted to a room").unwrap(),
            ),
        };
        // Export every label value from the start, so dashboards and alerts see 0, not nothing.
        for t in MESSAGE_TYPES {
            m.messages.with_label_values(&[t]);
        }
        for c in ErrorCode::ALL {
            m.errors.with_label_values(&[c.as_str()]);
        }
        Arc::new(m)
    }

    /// For tests and tools that need no registry.
    pub fn unregistered() -> Arc<Self> {
        Self::new(&Registry::new())
    }

    pub fn message(&self, message_type: &'static str) {
        self.messages.with_label_values(&[message_type]).inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    pub fn joined_media(&self, since_ws_open: Duration) {
        self.join_duration.observe(since_ws_open.as_secs_f64());
    }
}
