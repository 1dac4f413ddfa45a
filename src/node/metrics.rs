//! The node plugin's metrics and admin listener. Labels come from fixed sets (kind, reason),
//! never from request content, so no pod name or volume id can grow the series.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Publish latency buckets in seconds: a publish is a TLS round trip plus a mount, a few ms.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// `publish` (first mount) or `republish` (kubelet's periodic call on a mounted volume).
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    reason: &'static str,
}

/// Counters, latency and the mounted-volume gauge.
pub struct NodeMetrics {
    registry: Registry,
    publishes: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    latency: Family<KindLabels, Histogram, fn() -> Histogram>,
    unpublishes: Counter,
    mounted: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runsecrets_node");
        let publishes = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let latency = Family::new_with_constructor(histogram as fn() -> Histogram);
        let unpublishes = Counter::default();
        let mounted = Gauge::default();
        registry.register(
            "publishes",
            "NodePublishVolume calls answered, by kind (publish, republish)",
            publishes.clone(),
        );
        registry.register(
            "publish_failures",
            "NodePublishVolume calls that failed, by kind and reason (the gRPC code)",
            failures.clone(),
        );
        registry.register(
            "publish_duration_seconds",
            "Time to answer NodePublishVolume, server round trip included",
            latency.clone(),
        );
        registry.register(
            "unpublishes",
            "NodeUnpublishVolume calls that succeeded",
            unpublishes.clone(),
        );
        registry.register(
            "volumes_mounted",
            "runsecrets tmpfs volumes mounted on this node",
            mounted.clone(),
        );
        Self {
            registry,
            publishes,
            failures,
            latency,
            unpublishes,
            mounted,
        }
    }
}

impl NodeMetrics {
    pub fn publish(&self, republish: bool, failure: Option<&'static str>, seconds: f64) {
        let kind = if republish { "republish" } else { "publish" };
        self.publishes.get_or_create(&KindLabels { kind }).inc();
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&FailureLabels { kind, reason })
                .inc();
        }
        self.latency
            .get_or_create(&KindLabels { kind })
            .observe(seconds);
    }

    pub fn unpublished(&self) {
        self.unpublishes.inc();
    }

    pub fn set_mounted(&self, n: usize) {
        self.mounted.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn mounted_delta(&self, delta: i64) {
        self.mounted.inc_by(delta);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<NodeMetrics>,
    ready: Arc<AtomicBool>,
}

/// `/livez`, `/readyz` (serving CSI) and `/metrics`.
pub fn admin_router(metrics: Arc<NodeMetrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { metrics, ready })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving CSI yet\n").into_response()
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
