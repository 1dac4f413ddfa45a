//! `secret rotate`: Swarm's documented rotation in one step. Secrets are immutable, so the new
//! value becomes a new secret (`NAME.v2`, `NAME.v3`…) and the workload's reference moves to it,
//! keeping the file's path, which rolls the workload onto the new value.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::cluster::{Cluster, WorkloadRef};
use crate::seal::PublicKeys;
use crate::spec::{canonical_list, check_name, parse_secrets};
use crate::store::{SecretRecord, Store, StoreError};

/// The name of the next version: `db` → `db.v2`, `db.v2` → `db.v3`.
pub fn next_version(name: &str) -> Option<String> {
    let next = match name.rsplit_once(".v") {
        Some((base, n))
            if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let n: u32 = n.parse().ok()?;
            format!("{base}.v{}", n.checked_add(1)?)
        }
        _ => format!("{name}.v2"),
    };
    check_name(&next).ok().map(|()| next)
}

/// Moves every reference to `old` in an annotation to `new`. Parsed references carry their
/// target explicitly, so the file keeps its path. Returns the new annotation and how many
/// references moved.
pub fn move_references(annotation: &str, old: &str, new: &str) -> Result<(String, usize), String> {
    let mut refs = parse_secrets(annotation)
        .map_err(|e| format!("the workload's secrets annotation does not parse: {e}"))?;
    let mut moved = 0;
    for r in refs.iter_mut().filter(|r| r.source == old) {
        r.source = new.to_string();
        moved += 1;
    }
    Ok((canonical_list(&refs), moved))
}

/// What a rotation did, for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Rotation {
    pub id: String,
    pub name: String,
    /// `deployment/web` when a workload's reference moved.
    pub workload: Option<String>,
}

/// Creates the next version of `name` with the new value (same labels and service accounts)
/// and, with `workload`, moves its pod template's references onto it.
#[allow(clippy::too_many_arguments)]
pub fn rotate(
    store: &dyn Store,
    cluster: &dyn Cluster,
    keys: &PublicKeys,
    namespace: &str,
    name: &str,
    data: Zeroizing<Vec<u8>>,
    workload: Option<&WorkloadRef>,
) -> Result<Rotation, StoreError> {
    let current = store
        .get(namespace, name)?
        .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
    // Check the workload before creating anything, so a typo leaves no stray secret.
    let annotation = match workload {
        Some(w) => {
            let text = cluster.template_secrets(namespace, w)?.unwrap_or_default();
            let (_, moved) =
                move_references(&text, name, name).map_err(|message| StoreError::Api {
                    step: "reading the workload",
                    message,
                })?;
            if moved == 0 {
                return Err(StoreError::Api {
                    step: "reading the workload",
                    message: format!("{w} does not declare secret '{name}'"),
                });
            }
            Some(text)
        }
        None => None,
    };
    let mut next = next_version(name).ok_or(StoreError::Name)?;
    while store.get(namespace, &next)?.is_some() {
        next = next_version(&next).ok_or(StoreError::Name)?;
    }
    let labels: BTreeMap<String, String> = current.labels.clone();
    let record = SecretRecord::seal(
        keys,
        namespace,
        &next,
        &data,
        labels,
        current.spec.service_accounts.clone(),
    )?;
    store.create(&record)?;
    let mut moved_in = None;
    if let (Some(w), Some(text)) = (workload, annotation) {
        let (updated, _) =
            move_references(&text, name, &next).map_err(|message| StoreError::Api {
                step: "rewriting the workload's references",
                message,
            })?;
        cluster.set_template_secrets(namespace, w, &updated)?;
        moved_in = Some(w.to_string());
    }
    Ok(Rotation {
        id: record.id,
        name: next,
        workload: moved_in,
    })
}
