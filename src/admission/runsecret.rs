//! Admission of `RunSecret` objects: what `kubectl apply` stores must follow the same rules as
//! what `runsecrets secret create` stores (name, size, an envelope that matches its spec, a
//! key the cluster holds), so a bad object is refused when it is created, not when a pod
//! needs it.

use base64::Engine;
use kube::core::admission::Operation;

use super::{wire, workload::describe_json_error, Denial, DenyReason};
use subtle::ConstantTimeEq;

use crate::seal::{self, Keyring, PublicKeys};
use crate::spec;
use crate::store::{envelope_digest, object_name, RunSecret, MAX_SECRET_BYTES};

/// Whether the request is about a `RunSecret`.
pub fn applies(request: &wire::Request<'_>) -> bool {
    request.kind.group == "runsecrets.io" && request.kind.kind == "RunSecret"
}

fn invalid(message: String) -> Denial {
    Denial::new(DenyReason::InvalidObject, message)
}

fn read(raw: &str) -> Result<RunSecret, Denial> {
    serde_json::from_str(raw).map_err(|e| {
        invalid(format!(
            "cannot read the RunSecret: {}",
            describe_json_error(&e)
        ))
    })
}

/// Checks a `RunSecret` on CREATE, and on an UPDATE that changes its spec: a reseal. The CRD's
/// CEL rule lets only the sealing fields change, but it can neither hash nor open an envelope,
/// so here the new envelope is checked as at creation, must carry the server's reseal tag (so
/// only `POST /v1/reseal` can produce an accepted change, and an update cannot test a guess of
/// the value), and must hold the very value the stored one holds: that is what keeps the value
/// immutable. `None` allows it.
pub fn check(
    request: &wire::Request<'_>,
    keys: Option<&PublicKeys>,
    keyring: Option<&Keyring>,
) -> Option<Denial> {
    match request.operation {
        Operation::Create => match read(request.object.raw()?) {
            Ok(object) => check_object(&object, keys),
            Err(denial) => Some(denial),
        },
        Operation::Update => {
            let (object, old) = match (read(request.object.raw()?), read(request.old_object.raw()?))
            {
                (Ok(object), Ok(old)) => (object, old),
                (Err(denial), _) | (_, Err(denial)) => return Some(denial),
            };
            // A label change: the spec is as it was admitted.
            if object.spec == old.spec {
                return None;
            }
            if let Some(denial) = check_object(&object, keys) {
                return Some(denial);
            }
            let keyring = match keyring {
                Some(keyring) => keyring,
                None => return Some(cannot_check(keys.is_some())),
            };
            if !tagged(request, &old, &object, keyring) {
                return Some(invalid(UNTAGGED.into()));
            }
            same_value(request, &old, &object, keyring)
        }
        _ => None,
    }
}

/// The one answer to a spec change without a valid reseal tag, whatever is wrong with it, so
/// the answer tells nothing about the tag or the value.
const UNTAGGED: &str = "spec.ciphertext: only `runsecrets secret reseal` may change it (the \
     update must carry the server's runsecrets.io/reseal-tag for this envelope); store a new \
     value as a new secret";

/// Why a reseal cannot be checked without an open keyring: an unchecked update could swap the
/// value, so it is refused.
fn cannot_check(locked: bool) -> Denial {
    invalid(if locked {
        "spec.ciphertext: only a reseal may change it, and this server cannot check one while \
         its keyring is locked: unlock the server, then reseal"
            .into()
    } else {
        "spec.ciphertext: only a reseal may change it, and this server has no keyring \
         (--store none) to check one with: run the server with the store that holds the keys"
            .into()
    })
}

/// Whether the update carries the tag `POST /v1/reseal` made for this secret, this stored
/// envelope and this new one (checked before anything is opened, in constant time).
fn tagged(
    request: &wire::Request<'_>,
    old: &RunSecret,
    new: &RunSecret,
    keyring: &Keyring,
) -> bool {
    let Some(tag) = new
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(spec::RESEAL_TAG_ANNOTATION))
    else {
        return false;
    };
    let Ok(stored) = base64::engine::general_purpose::STANDARD.decode(&old.spec.ciphertext) else {
        return false;
    };
    let Ok(header) = seal::header(&stored) else {
        return false;
    };
    let old_digest = envelope_digest(&stored);
    let binding = seal::ResealBinding {
        namespace: request.namespace.as_deref().unwrap_or_default(),
        name: &new.spec.name,
        old_digest: &old_digest,
        new_digest: &new.spec.digest,
    };
    seal::verify_reseal_tag(keyring, header.key_id, &binding, tag)
}

/// Whether the resealed envelope opens, as the same secret, to the value the stored one holds:
/// the second check behind the tag.
fn same_value(
    request: &wire::Request<'_>,
    old: &RunSecret,
    new: &RunSecret,
    keyring: &Keyring,
) -> Option<Denial> {
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let open = |object: &RunSecret| {
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(&object.spec.ciphertext)
            .ok()?;
        seal::open(keyring, namespace, &object.spec.name, &envelope).ok()
    };
    let Some(stored) = open(old) else {
        return Some(invalid(
            "the stored spec.ciphertext does not open with this cluster's keys, so no reseal \
             of it can be checked: store the value as a new secret"
                .into(),
        ));
    };
    let Some(resealed) = open(new) else {
        return Some(invalid(format!(
            "spec.ciphertext does not open as secret {namespace}/{} with this cluster's keys",
            new.spec.name
        )));
    };
    if bool::from(stored.as_slice().ct_eq(resealed.as_slice())) {
        None
    } else {
        Some(invalid(format!(
            "spec.ciphertext holds another value: {}",
            crate::store::resource::SPEC_RULE_MESSAGE
        )))
    }
}

/// The checks of a `RunSecret` as stored: name, size, an envelope that matches the spec, and
/// a key of this cluster.
fn check_object(object: &RunSecret, keys: Option<&PublicKeys>) -> Option<Denial> {
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
