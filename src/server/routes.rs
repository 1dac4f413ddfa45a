//! HTTP routes: the webhook endpoints on the TLS listener and the admin endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::connections::Connections;
use super::metrics::Metrics;
use crate::admission::{self, Endpoint};
use crate::policy::{Level, Levels, Mode};
use crate::seal::LiveKeyring;
use crate::store::catalogue::Catalogue;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub defaults: Levels,
    pub options: admission::Options,
    /// Which secrets exist; `None` when the server runs without a store.
    pub catalogue: Option<Arc<dyn Catalogue>>,
    /// The store's keyring: its public keys are served at `GET /v1/keys` (locked or not),
    /// and `/readyz` says when it is locked.
    pub keyring: Option<Arc<LiveKeyring>>,
    pub ready: Arc<AtomicBool>,
    /// The connection tables of the webhook and delivery listeners, for `/readyz`.
    /// A shared slice: the state is cloned for every request.
    pub listeners: Arc<[Arc<Connections>]>,
    /// Largest review body read (`--max-body-bytes`); larger ones get 413.
    pub max_body: usize,
}

/// `/mutate`, `/validate` (every mode at the cluster defaults) and `/validate/{mode}/{level}`
/// (one webhook entry per namespace-label value; level `default` for namespaces without the
/// label), plus a trivial `/livez` on the same listener.
pub fn webhook(state: AppState, timeout: Duration) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate_defaults))
        .route("/validate/{mode}/{level}", post(validate_selected))
        .route("/livez", get(|| async { "ok" }))
        .route("/v1/keys", get(public_keys))
        .layer(middleware::from_fn_with_state(timeout, deadline))
        .with_state(state)
}

/// `/livez`, `/readyz` and `/metrics` over plain HTTP for the kubelet and Prometheus.
pub fn admin(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "review timed out\n").into_response(),
    }
}

/// The public keys, so anyone can seal offline (`runsecrets seal --key`).
async fn public_keys(State(state): State<AppState>) -> Response {
    match &state.keyring {
        Some(keyring) => axum::Json(keyring.public_keys().as_ref().clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this server has no keyring (--store none)\n",
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let loaded = state.catalogue.as_ref().is_none_or(|c| c.ready());
    if !state.ready.load(Ordering::Relaxed) || !loaded {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    }
    if state.keyring.as_ref().is_some_and(|k| k.is_locked()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "locked: the keyring waits for its unlock key (run runsecrets unlock)\n",
        )
            .into_response();
    }
    // Saturated: every connection has a request in flight and a new one is waiting. Another
    // replica can take the traffic; an idle-connection flood never gets here (idle
    // connections are evicted).
    match state.listeners.iter().find(|l| l.saturated()) {
        Some(full) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} listener saturated: all {} connections have a request in flight\n",
                full.name,
                full.capacity()
            ),
        )
            .into_response(),
        None => "ok".into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    answer(&state, "mutate", Endpoint::Mutate, request).await
}

async fn validate_defaults(State(state): State<AppState>, request: Request) -> Response {
    let levels = state.defaults;
    answer(&state, "validate", Endpoint::Validate(levels), request).await
}

async fn validate_selected(
    State(state): State<AppState>,
    Path((mode, level)): Path<(String, String)>,
    request: Request,
) -> Response {
    let mode = match mode.parse::<Mode>() {
        Ok(m) => m,
        Err(e) => return (StatusCode::NOT_FOUND, e + "\n").into_response(),
    };
    // `default`: the entry for namespaces without the label; the server's flag decides.
    let level = match level.as_str() {
        "default" => state.defaults.get(mode),
        other => match other.parse::<Level>() {
            Ok(l) => l,
            Err(e) => return (StatusCode::NOT_FOUND, e + "\n").into_response(),
        },
    };
    answer(
        &state,
        "validate",
        Endpoint::Validate(Levels::only(mode, level)),
        request,
    )
    .await
}

/// Bodies above this are reviewed on the blocking pool, so a few large reviews cannot stall
/// the runtime that also answers health probes.
const INLINE_BODY_MAX: usize = 64 * 1024;

async fn answer(
    state: &AppState,
    name: &'static str,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let started = Instant::now();
    // The whole request rather than a `HeaderMap` extractor, which copies every header.
    let (parts, body) = request.into_parts();
    let body: Bytes = match super::body::read(&parts.headers, body, state.max_body).await {
        Ok(body) => body,
        Err(e) => {
            state.metrics.bad_request(name);
            return (e.status(), format!("{e}\n")).into_response();
        }
    };
    let options = state.options;
    let catalogue = state.catalogue.clone();
    let keys = state.keyring.as_ref().map(|k| k.public_keys());
    let keyring = state.keyring.as_ref().and_then(|k| k.keyring());
    let run = move |body: &[u8]| {
        let context = admission::Context {
            options,
            catalogue: catalogue.as_deref(),
            keys: keys.as_deref(),
            keyring: keyring.as_deref(),
        };
        admission::review_with(endpoint, context, body)
    };
    let result = if body.len() <= INLINE_BODY_MAX {
        run(&body)
    } else {
        match tokio::task::spawn_blocking(move || run(&body)).await {
            Ok(result) => result,
            Err(_) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "review failed\n").into_response()
            }
        }
    };
    match result {
        Ok(answer) => {
            let elapsed = started.elapsed();
            state
                .metrics
                .review(name, answer.decision, elapsed.as_secs_f64());
            tracing::debug!(
                uid = %answer.uid,
                endpoint = name,
                allowed = answer.decision.allowed,
                reason = answer.decision.reason,
                micros = elapsed.as_micros() as u64,
                "review"
            );
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(bad) => {
            state.metrics.bad_request(name);
            tracing::info!(endpoint = name, error = %bad, "rejected a request body");
            (StatusCode::BAD_REQUEST, format!("{bad}\n")).into_response()
        }
    }
}
