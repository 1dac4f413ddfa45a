//! `secret reseal`: which records move, and the record that replaces each once the server
//! has resealed its envelope (checked before it is stored).

use crate::server::reseal::{ResealRequest, ResealResponse};
use crate::store::{SecretRecord, Store, StoreError};

/// The records to reseal: the named ones (each must exist) or, with `all`, every one of the
/// namespace; those already sealed with `newest` are left out.
pub fn to_reseal(
    store: &dyn Store,
    namespace: &str,
    names: &[String],
    all: bool,
    newest: &str,
) -> Result<Vec<SecretRecord>, StoreError> {
    let records = if all {
        store.list(Some(namespace))?
    } else {
        names
            .iter()
            .map(|name| {
                store
                    .get(namespace, name)?
                    .ok_or_else(|| StoreError::NotFound(name.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(records
        .into_iter()
        .filter(|r| r.spec.key_id != newest)
        .collect())
}

/// What the server is sent for `record`.
pub fn request(record: &SecretRecord) -> ResealRequest {
    ResealRequest {
        namespace: record.namespace.clone(),
        name: record.name.clone(),
        ciphertext: record.spec.ciphertext.clone(),
    }
}

/// The record with the server's envelope, and the server's reseal tag to store with it; its
/// digest, key id and size are checked against the envelope as any stored record is, so a
/// wrong answer is never stored.
pub fn resealed(
    old: &SecretRecord,
    answer: ResealResponse,
) -> Result<(SecretRecord, String), StoreError> {
    let mut new = old.clone();
    new.spec.ciphertext = answer.ciphertext;
    new.spec.key_id = answer.key_id;
    new.spec.digest = answer.digest;
    new.id = SecretRecord::derive_id(&new.namespace, &new.name, &new.spec.digest);
    new.updated = crate::seal::now_rfc3339();
    new.envelope()?;
    Ok((new, answer.tag))
}
