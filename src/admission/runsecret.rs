//! Admission of `RunSecret` objects: what `kubectl apply` stores must follow the same rules as
//! what `runsecrets secret create` stores (name, size, an envelope that matches its spec, a
//! key the cluster holds), so a bad object is refused when it is created, not when a pod
//! needs it.

use base64::Engine;
use kube::core::admission::Operation;

use super::{wire, workload::describe_json_error, Denial, DenyReason};
use crate::seal::{self, PublicKeys};
use crate::spec;
use crate::store::{envelope_digest, object_name, RunSecret, MAX_SECRET_BYTES};

/// Whether the request is about a `RunSecret`.
pub fn applies(request: &wire::Request<'_>) -> bool {
    request.kind.group == "runsecrets.io" && request.kind.kind == "RunSecret"
}

fn invalid(message: String) -> Denial {
    Denial::new(DenyReason::InvalidObject, message)
}

/// Checks a `RunSecret` on CREATE (its spec cannot change afterwards); `None` allows it.
pub fn check(request: &wire::Request<'_>, keys: Option<&PublicKeys>) -> Option<Denial> {
    if !matches!(request.operation, Operation::Create) {
        return None;
    }
    let raw = request.object.raw()?;
    let object: RunSecret = match serde_json::from_str(raw) {
        Ok(o) => o,
        Err(e) => {
            return Some(invalid(format!(
                "cannot read the RunSecret: {}",
                describe_json_error(&e)
            )))
        }
    };
    let spec = &object.spec;
    if spec::check_name(&spec.name).is_err() {
        return Some(invalid(
            "spec.name: invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]".into(),
        ));
    }
    let expected = object_name(&spec.name);
    if object.metadata.name.as_deref() != Some(expected.as_str()) {
        return Some(invalid(format!(
            "metadata.name must be {expected:?} for secret {:?} (runsecrets seal writes it)",
            spec.name
        )));
    }
    if spec.size < 1 || spec.size >= MAX_SECRET_BYTES as i64 {
        return Some(invalid(
            "spec.size: secret data must be larger than 0 and less than 512000 bytes".into(),
        ));
    }
    let Ok(envelope) = base64::engine::general_purpose::STANDARD.decode(&spec.ciphertext) else {
        return Some(invalid("spec.ciphertext is not base64".into()));
    };
    if spec.digest != envelope_digest(&envelope) {
        return Some(invalid("spec.digest does not match spec.ciphertext".into()));
    }
    let header = match seal::header(&envelope) {
        Ok(header) => header,
        Err(e @ (seal::SealError::UnknownFormat(_) | seal::SealError::UnknownSuite(_))) => {
            return Some(invalid(format!("spec.ciphertext: {e}")))
        }
        Err(_) => {
            return Some(invalid(
                "spec.ciphertext is not a runsecrets envelope".into(),
            ))
        }
    };
    if header.key_id != spec.key_id || i64::try_from(header.plaintext_len).ok() != Some(spec.size) {
        return Some(invalid(
            "spec.keyId or spec.size does not match the sealed envelope".into(),
        ));
    }
    if let Some(keys) = keys {
        let Some(key) = keys.keys.iter().find(|k| k.id == spec.key_id) else {
            return Some(invalid(format!(
                "spec.keyId {:?} is not a key of this cluster; seal with its public keys (GET /v1/keys)",
                spec.key_id
            )));
        };
        if key.suite != header.suite {
            return Some(invalid(format!(
                "spec.ciphertext names suite {} but key {} is an {} key: it was altered",
                header.suite, key.id, key.suite
            )));
        }
    }
    None
}
