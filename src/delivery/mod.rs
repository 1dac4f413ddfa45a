//! The delivery API: node plugins ask for a pod's secrets, the server checks who is asking and
//! for which pod, unseals, and answers over TLS.
//!
//! Nothing the node plugin says about the pod is trusted: the pod's identity (namespace,
//! service account, pod name and uid) comes from reviewing the pod's own token, which must be
//! bound to exactly the pod the plugin names. A secret is served only within its namespace and,
//! when it lists service accounts, only to those.

pub mod auth;
pub mod routes;
pub mod tokenreview;
pub mod unlock;
pub mod wire;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::Chain;
use crate::seal::LiveKeyring;
use crate::store::catalogue::grants_of;
use crate::store::{check_namespace, SecretRecord, StoreError};
use auth::{AuthError, Authenticator, Identity};
use wire::{DeliveredSecret, DeliveryError, PublishRequest, PublishResponse, Reason};

/// Most secrets one volume may ask for.
pub const MAX_SECRETS_PER_VOLUME: usize = 256;

/// Reads one sealed secret without network I/O on the request path (the file store reads a
/// small file; the Kubernetes store answers from its watch cache).
pub trait SecretLookup: Send + Sync {
    fn lookup(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError>;
}

impl SecretLookup for crate::store::FileStore {
    fn lookup(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        crate::store::Store::get(self, namespace, name)
    }
}

/// The delivery service: authenticator, secret lookup and the keys that open them.
pub struct Delivery {
    pub auth: Arc<dyn Authenticator>,
    pub secrets: Arc<dyn SecretLookup>,
    /// Locked (autolock) until unlocked: deliveries are refused meanwhile.
    pub keyring: Arc<LiveKeyring>,
}

/// The refusal while the keyring waits for its unlock key.
pub const LOCKED: &str = "the server is locked: run runsecrets unlock";

fn deny(reason: Reason, message: impl Into<String>) -> DeliveryError {
    DeliveryError {
        reason,
        message: message.into(),
    }
}

impl Delivery {
    /// Authenticates the node plugin and the pod, authorizes every requested secret, and
    /// returns their values. Every outcome is one audit line; values never are.
    pub async fn publish(
        &self,
        bearer: &str,
        request: PublishRequest,
    ) -> Result<PublishResponse, DeliveryError> {
        let result = self.decide(bearer, &request).await;
        // The fields are the caller's words until checked, and so is much of a refusal's
        // message: each is bounded and without control characters here, so a hostile request
        // cannot flood the audit log (the subscriber escapes every field of every line).
        let pod = clean(&format!("{}/{}", request.pod_namespace, request.pod_name));
        let secrets = clean(&request.secrets.join(","));
        let request = PublishRequest {
            node_id: clean(&request.node_id),
            pod_uid: clean(&request.pod_uid),
            ..request
        };
        match &result {
            Ok(_) => tracing::info!(
                target: "runsecrets::audit",
                node = %request.node_id, pod = %pod, uid = %request.pod_uid, secrets = %secrets,
                decision = "granted", "secret delivery"
            ),
            Err(e) => tracing::warn!(
                target: "runsecrets::audit",
                node = %request.node_id, pod = %pod, uid = %request.pod_uid, secrets = %secrets,
                decision = "denied", reason = ?e.reason, detail = %clean(&e.message),
                "secret delivery"
            ),
        }
        result
    }

    async fn decide(
        &self,
        bearer: &str,
        request: &PublishRequest,
    ) -> Result<PublishResponse, DeliveryError> {
        check_request(request)?;
        let Some(keyring) = self.keyring.keyring() else {
            return Err(deny(Reason::Unavailable, LOCKED));
        };
        let caller_node = self.auth.node(bearer).await.map_err(|e| match e {
            AuthError::Unavailable(m) => deny(Reason::Unavailable, m),
            e => deny(
                Reason::Unauthenticated,
                format!("the caller is not the runsecrets node plugin: {e}"),
            ),
        })?;
        let identity = self
            .auth
            .review(&request.token)
            .await
            .map_err(|e| match e {
                AuthError::Unavailable(m) => deny(Reason::Unavailable, m),
                e => deny(Reason::Forbidden, format!("pod token refused: {e}")),
            })?;
        check_binding(&identity, request, caller_node.as_deref())?;
        let mut granted = Vec::with_capacity(request.secrets.len());
        for name in &request.secrets {
            let record = self
                .secrets
                .lookup(&identity.namespace, name)
                .map_err(|e| {
                    deny(
                        Reason::Unavailable,
                        format!("reading secret '{name}': {}", Chain(&e)),
                    )
                })?
                .ok_or_else(|| {
                    deny(
                        Reason::NotFound,
                        format!(
                            "secret '{name}' does not exist in namespace {}",
                            identity.namespace
                        ),
                    )
                })?;
            let grants = grants_of(&record);
            if !grants.admits(&identity.service_account) {
                return Err(deny(
                    Reason::Forbidden,
                    grants.refusal(name, &identity.service_account),
                ));
            }
            let value = record
                .unseal(&keyring, &identity.namespace, name)
                .map_err(|e| {
                    deny(
                        Reason::Unavailable,
                        format!("opening secret '{name}': {}", Chain(&e)),
                    )
                })?;
            granted.push(DeliveredSecret {
                name: name.clone(),
                data: Zeroizing::new(B64.encode(value.as_slice())),
            });
        }
        Ok(PublishResponse { secrets: granted })
    }
}

/// Safe for a log line.
fn clean(text: &str) -> String {
    crate::error::printable(text, 256)
}

/// Shape checks before any token is reviewed.
fn check_request(request: &PublishRequest) -> Result<(), DeliveryError> {
    let bad = |m: String| Err(deny(Reason::InvalidRequest, m));
    if let Err(e) = check_namespace(&request.pod_namespace) {
        return bad(format!("podNamespace: {e}"));
    }
    if request.pod_name.is_empty() || request.pod_uid.is_empty() {
        return bad("podName and podUid are required".into());
    }
    // Refusals further on name the pod; only fields of a pod's shape are ever shown.
    if !is_pod_name(&request.pod_name) {
        return bad(
            "podName is not a pod name (1-253 of [a-z0-9.-], alphanumeric at both ends)".into(),
        );
    }
    if !is_uid(&request.pod_uid) {
        return bad("podUid is not a uid (1-128 of [A-Za-z0-9-])".into());
    }
    if request.secrets.is_empty() || request.secrets.len() > MAX_SECRETS_PER_VOLUME {
        return bad(format!(
            "ask for 1 to {MAX_SECRETS_PER_VOLUME} secrets (got {})",
            request.secrets.len()
        ));
    }
    for (i, name) in request.secrets.iter().enumerate() {
        if crate::spec::check_name(name).is_err() {
            return bad(format!("secrets[{i}] is not a valid secret name"));
        }
        if request.secrets[..i].contains(name) {
            return bad(format!("secrets[{i}] repeats '{name}'"));
        }
    }
    Ok(())
}

/// A DNS subdomain, as every pod name is.
fn is_pod_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// The apiserver's uids are UUIDs; anything of that alphabet and a sane length passes.
fn is_uid(uid: &str) -> bool {
    (1..=128).contains(&uid.len()) && uid.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// The token must be bound to the pod the node plugin publishes for, and that pod must run on
/// the caller's node (when both tokens name a node), so a node plugin's credential cannot pull
/// another node's pods' secrets.
fn check_binding(
    identity: &Identity,
    request: &PublishRequest,
    caller_node: Option<&str>,
) -> Result<(), DeliveryError> {
    let Some(pod) = &identity.pod else {
        return Err(deny(
            Reason::Forbidden,
            "pod token refused: it is not bound to a pod (use the token kubelet requests for the CSIDriver)",
        ));
    };
    if identity.namespace != request.pod_namespace
        || pod.name != request.pod_name
        || pod.uid != request.pod_uid
    {
        return Err(deny(
            Reason::Forbidden,
            format!(
                "pod token refused: it belongs to pod {}/{} (uid {}), not {}/{} (uid {})",
                identity.namespace,
                pod.name,
                pod.uid,
                request.pod_namespace,
                request.pod_name,
                request.pod_uid
            ),
        ));
    }
    if let (Some(caller), Some(scheduled)) = (caller_node, identity.node.as_deref()) {
        if caller != scheduled {
            return Err(deny(
                Reason::Forbidden,
                format!(
                    "pod {}/{} runs on node {scheduled}, not on the calling node plugin's node {caller}",
                    identity.namespace, pod.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
