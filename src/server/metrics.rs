//! Prometheus metrics. Labels come from fixed sets (endpoint, decision, reason), never from
//! request content, so a hostile request cannot grow the series or leak into them.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::connections::Closed;
use crate::admission::Decision;

/// Review latency buckets in seconds: a review takes tens of microseconds, so the buckets start
/// at 50 µs.
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    endpoint: &'static str,
    decision: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    rejected_bodies: Family<EndpointLabels, Counter>,
    deliveries: Family<OutcomeLabels, Counter>,
    delivery_latency: Histogram,
    connections: Family<ListenerLabels, Gauge>,
    closed: Family<ClosedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runsecrets");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let latency = Family::new_with_constructor(histogram as fn() -> Histogram);
        let rejected_bodies = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "Admission reviews answered, by endpoint, decision and reason",
            reviews.clone(),
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time from request to answer for admission reviews",
            latency.clone(),
        );
        registry.register(
            "admission_bad_requests",
            "Requests that were not AdmissionReviews (answered 400)",
            rejected_bodies.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        let delivery_latency = histogram();
        registry.register(
            "deliveries",
            "Secret deliveries to node plugins, by outcome (granted or the refusal reason)",
            deliveries.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time to answer a node plugin, token reviews included",
            delivery_latency.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections",
            "Connections open on each listener",
            connections.clone(),
        );
        let closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed_by_server",
            "Connections the server closed itself: a deadline passed while idle, or evicted for a new one",
            closed.clone(),
        );
        Self {
            registry,
            reviews,
            latency,
            rejected_bodies,
            deliveries,
            delivery_latency,
            connections,
            closed,
        }
    }
}

impl Metrics {
    pub fn review(&self, endpoint: &'static str, decision: Decision, seconds: f64) {
        self.reviews
            .get_or_create(&ReviewLabels {
                endpoint,
                decision: if decision.allowed { "allow" } else { "deny" },
                reason: decision.reason,
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    pub fn bad_request(&self, endpoint: &'static str) {
        self.rejected_bodies
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
    }

    /// One answered delivery: `granted` or the refusal's reason label.
    pub fn delivery(&self, outcome: &'static str, seconds: f64) {
        self.deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.delivery_latency.observe(seconds);
    }

    /// The open-connections gauge of one listener, kept by its connection table.
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    pub fn connection_closed(&self, listener: &'static str, reason: Closed) {
        self.closed
            .get_or_create(&ClosedLabels {
                listener,
                reason: reason.label(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
