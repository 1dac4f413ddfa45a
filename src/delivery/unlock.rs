//! Unlocking an autolocked keyring: `POST /v1/unlock` on the delivery listener, and the
//! `--unlock-key-file` watcher.
//!
//! Who may unlock: whoever holds the unlock key. The key is the credential (32 random bytes,
//! as Swarm's), it only ever travels over TLS, and a correct key gives the server nothing it
//! should not have. The endpoint sits on the delivery listener because that listener exists
//! exactly when there is a keyring, and already speaks to callers that hold credentials; the
//! admin listener is plain HTTP and is never sent a key. Guessing is hopeless at 256 bits, but
//! every attempt costs an Argon2id derivation (19 MiB, ~50 ms), so attempts are rate limited:
//! one at a time, and none within a second of a failed one (429 with Retry-After).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::Chain;
use crate::seal::protector::{ProtectError, UnlockKey};
use crate::seal::LiveKeyring;
use crate::server::body;

/// The unlock path on the delivery listener.
pub const UNLOCK_PATH: &str = "/v1/unlock";
/// An unlock request is one short key.
const MAX_UNLOCK_BYTES: usize = 4 * 1024;
/// After a failed attempt, the next is refused for this long.
const BACKOFF: Duration = Duration::from_secs(1);
/// How often a locked server reads --unlock-key-file.
const FILE_INTERVAL: Duration = Duration::from_secs(2);

/// The body of `POST /v1/unlock`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnlockRequest {
    pub unlock_key: Zeroizing<String>,
}

/// The rate limit's state: held while an attempt runs; the last failure's time.
pub struct Unlocker {
    keyring: Arc<LiveKeyring>,
    last_failure: tokio::sync::Mutex<Option<Instant>>,
}

/// Plain-text answers: the CLI prints them as they are.
fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    (status, format!("{}\n", text.into())).into_response()
}

impl Unlocker {
    pub fn new(keyring: Arc<LiveKeyring>) -> Arc<Self> {
        Arc::new(Self {
            keyring,
            last_failure: tokio::sync::Mutex::new(None),
        })
    }

    /// One attempt, under the rate limit.
    async fn attempt(&self, key: UnlockKey) -> Response {
        if !self.keyring.is_locked() {
            return answer(
                StatusCode::OK,
                format!("keyring {} is already unlocked", self.keyring.id()),
            );
        }
        let Ok(mut last_failure) = self.last_failure.try_lock() else {
            return too_many("another unlock attempt is running; try again in a second");
        };
        if let Some(at) = *last_failure {
            if at.elapsed() < BACKOFF {
                return too_many(
                    "an unlock attempt failed less than a second ago; try again in a second",
                );
            }
        }
        let keyring = self.keyring.clone();
        let result = tokio::task::spawn_blocking(move || keyring.unlock(&key)).await;
        match result {
            Ok(Ok(_)) => {
                *last_failure = None;
                tracing::info!(keyring = %self.keyring.id(), "unlocked the keyring (POST /v1/unlock): deliveries resume");
                answer(
                    StatusCode::OK,
                    format!("unlocked keyring {}", self.keyring.id()),
                )
            }
            Ok(Err(e)) => {
                *last_failure = Some(Instant::now());
                tracing::warn!(keyring = %self.keyring.id(), error = %Chain(&e), "an unlock attempt failed");
                let status = match e {
                    ProtectError::WrongUnlockKey(_) => StatusCode::FORBIDDEN,
                    ProtectError::NotAutolock { .. } | ProtectError::NeedsPkcs11 { .. } => {
                        StatusCode::CONFLICT
                    }
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                answer(status, Chain(&e).to_string())
            }
            Err(_) => answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the unlock attempt failed",
            ),
        }
    }
}

fn too_many(text: &str) -> Response {
    let mut response = answer(StatusCode::TOO_MANY_REQUESTS, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// `POST /v1/unlock`: `{"unlockKey": "RSUNLOCK-1-…"}`.
pub async fn handle(
    State(unlocker): State<Arc<Unlocker>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match body::read(&headers, body, MAX_UNLOCK_BYTES).await {
        Ok(bytes) => Zeroizing::new(bytes.to_vec()),
        Err(e) => return answer(e.status(), e.to_string()),
    };
    let Ok(request) = serde_json::from_slice::<UnlockRequest>(&bytes) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "the body must be {\"unlockKey\": \"RSUNLOCK-1-...\"}",
        );
    };
    match request.unlock_key.parse::<UnlockKey>() {
        Ok(key) => unlocker.attempt(key).await,
        Err(e) => answer(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// While the keyring is locked, reads `path` every few seconds and unlocks with it; each
/// distinct failure is logged once. Ends once the keyring is open.
pub async fn watch_file(keyring: Arc<LiveKeyring>, path: PathBuf) {
    let mut last_error = None;
    while keyring.is_locked() {
        let read = tokio::fs::read_to_string(&path).await.map(Zeroizing::new);
        let outcome = match read {
            Err(e) => Err(format!("reading --unlock-key-file {}: {e}", path.display())),
            Ok(text) => match text.parse::<UnlockKey>() {
                Err(e) => Err(format!("--unlock-key-file {}: {e}", path.display())),
                Ok(key) => {
                    let ring = keyring.clone();
                    match tokio::task::spawn_blocking(move || ring.unlock(&key)).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(format!(
                            "--unlock-key-file {}: {}",
                            path.display(),
                            Chain(&e)
                        )),
                        Err(e) => Err(format!("--unlock-key-file {}: {e}", path.display())),
                    }
                }
            },
        };
        match outcome {
            Ok(()) => {
                tracing::info!(keyring = %keyring.id(), file = %path.display(), "unlocked the keyring with --unlock-key-file: deliveries resume");
                return;
            }
            Err(message) if last_error.as_ref() != Some(&message) => {
                tracing::warn!(keyring = %keyring.id(), error = %message, "the keyring stays locked");
                last_error = Some(message);
            }
            Err(_) => {}
        }
        tokio::time::sleep(FILE_INTERVAL).await;
    }
}

/// `runsecrets unlock`: posts the unlock key to `server`'s `/v1/unlock` over TLS, trusting
/// only the CA in `ca`. Returns the server's answer.
pub async fn send(
    server: &str,
    ca: &std::path::Path,
    key: &UnlockKey,
) -> Result<String, crate::server::call::CallError> {
    // Written by hand into a wiped buffer: the key's alphabet needs no JSON escaping.
    let body =
        Zeroizing::new(format!("{{\"unlockKey\":\"{}\"}}", key.reveal().as_str()).into_bytes());
    let (_, answer) = crate::server::call::post(server, ca, UNLOCK_PATH, body).await?;
    Ok(crate::server::call::printable(&answer))
}
