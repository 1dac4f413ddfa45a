//! `POST /v1/reseal` on the delivery listener (beside `/v1/unlock`, the operator's other call): an envelope in, the same value sealed to the
//! newest key out (sealed-secrets' re-encrypt). The value never leaves the server: the caller
//! sends ciphertext and gets ciphertext, bound to the same namespace and name, so the answer
//! tells nothing it could not learn from `GET /v1/keys`; the caller then stores it with its
//! own credentials (`secret reseal`), so the store's access control decides who may write.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::seal::SealError;
use crate::seal::{header, reseal_tag, Keyring, LiveKeyring, PublicKey, ResealBinding};
use crate::store::{check_namespace, envelope_digest, MAX_SECRET_BYTES};

/// The reseal path on the delivery listener.
pub const RESEAL_PATH: &str = "/v1/reseal";

/// What `secret reseal` sends: one stored envelope and the secret it belongs to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResealRequest {
    pub namespace: String,
    pub name: String,
    /// Base64 of the envelope, as in the RunSecret's spec.
    pub ciphertext: String,
}

/// The new envelope, as the RunSecret's spec carries it, and the tag that proves this server
/// made it from the stored one (`runsecrets.io/reseal-tag`, which the webhook checks).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResealResponse {
    pub ciphertext: String,
    pub key_id: String,
    pub digest: String,
    pub tag: String,
}

fn refuse(status: StatusCode, text: impl Into<String>) -> Response {
    (status, format!("{}\n", text.into())).into_response()
}

pub async fn handle(
    State(live): State<Arc<LiveKeyring>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A 500 KiB secret is about 700 KB of base64.
    let body = match super::body::read(&headers, body, 2 * MAX_SECRET_BYTES).await {
        Ok(body) => body,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    let Ok(request) = serde_json::from_slice::<ResealRequest>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body must be {\"namespace\", \"name\", \"ciphertext\"}",
        );
    };
    if check_namespace(&request.namespace).is_err()
        || crate::spec::check_name(&request.name).is_err()
    {
        return refuse(StatusCode::BAD_REQUEST, "namespace or name is not valid");
    }
    let Some(keyring) = live.keyring() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, crate::delivery::LOCKED);
    };
    let Ok(envelope) = B64.decode(&request.ciphertext) else {
        return refuse(StatusCode::BAD_REQUEST, "ciphertext is not base64");
    };
    let public = live.public_keys();
    let Ok(newest) = public.newest() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the keyring holds no key");
    };
    match answer(
        &keyring,
        newest,
        &request.namespace,
        &request.name,
        &envelope,
    ) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(
            e @ (SealError::Open
            | SealError::UnknownKey(_)
            | SealError::Malformed
            | SealError::UnknownFormat(_)
            | SealError::UnknownSuite(_)
            | SealError::SuiteMismatch { .. }),
        ) => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("secret {}/{}: {e}", request.namespace, request.name),
        ),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The same value sealed to `newest`, with the tag binding it to the stored `envelope` (the
/// key of the tag is derived from the key `envelope` was sealed to).
pub fn answer(
    keyring: &Keyring,
    newest: &PublicKey,
    namespace: &str,
    name: &str,
    envelope: &[u8],
) -> Result<ResealResponse, SealError> {
    let resealed = crate::seal::reseal(keyring, newest, namespace, name, envelope)?;
    let digest = envelope_digest(&resealed);
    let binding = ResealBinding {
        namespace,
        name,
        old_digest: &envelope_digest(envelope),
        new_digest: &digest,
    };
    let tag = reseal_tag(keyring, header(envelope)?.key_id, &binding)?;
    Ok(ResealResponse {
        digest,
        ciphertext: B64.encode(&resealed),
        key_id: newest.id.clone(),
        tag,
    })
}
