//! The delivery listener's routes: `POST /v1/publish` for node plugins, `POST /v1/unlock`
//! for an autolocked keyring, `POST /v1/reseal` for `secret reseal`, `GET /livez`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::wire::{DeliveryError, PublishRequest, Reason, PUBLISH_PATH};
use super::Delivery;
use crate::server::body;
use crate::server::metrics::Metrics;

/// A publish request names at most 256 secrets and one token: 64 KiB is plenty.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Body included: a client that trickles its body cannot hold a connection slot for longer.
/// The node plugin gives up after its own --publish-timeout (10 s by default).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct DeliveryState {
    delivery: Arc<Delivery>,
    metrics: Arc<Metrics>,
}

/// The router served on `--delivery-listen`.
pub fn router(delivery: Arc<Delivery>, metrics: Arc<Metrics>) -> Router {
    let unlock = Router::new()
        .route(super::unlock::UNLOCK_PATH, post(super::unlock::handle))
        .with_state(super::unlock::Unlocker::new(delivery.keyring.clone()));
    let reseal = Router::new()
        .route(
            crate::server::reseal::RESEAL_PATH,
            post(crate::server::reseal::handle),
        )
        .with_state(delivery.keyring.clone());
    Router::new()
        .route(PUBLISH_PATH, post(publish))
        .route("/livez", get(|| async { "ok" }))
        .with_state(DeliveryState { delivery, metrics })
        .merge(unlock)
        .merge(reseal)
        .layer(axum::middleware::from_fn(deadline))
}

async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error_response(&DeliveryError {
            reason: Reason::Unavailable,
            message: format!("the request took longer than {REQUEST_DEADLINE:?}"),
        }),
    }
}

fn error_response(error: &DeliveryError) -> Response {
    let status =
        StatusCode::from_u16(error.reason.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(error)).into_response()
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
}

async fn publish(State(state): State<DeliveryState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let body = match body::read(&headers, body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            state.metrics.delivery(
                Reason::InvalidRequest.label(),
                started.elapsed().as_secs_f64(),
            );
            let error = DeliveryError {
                reason: Reason::InvalidRequest,
                message: e.to_string(),
            };
            return (e.status(), axum::Json(error)).into_response();
        }
    };
    let outcome = match PublishRequest::from_body(&body) {
        Err(e) => Err(e),
        Ok(request) => state.delivery.publish(bearer(&headers), request).await,
    };
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(answer) => {
            state.metrics.delivery("granted", seconds);
            axum::Json(answer).into_response()
        }
        Err(error) => {
            state.metrics.delivery(error.reason.label(), seconds);
            error_response(&error)
        }
    }
}
