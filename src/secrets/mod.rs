//! Swarm's `docker secret` verbs (create, ls, inspect, rm, rotate, reseal), `seal`, and the
//! keyring's `keys` and `unlock`, over a [`Store`]. Each verb returns what it prints, so tests
//! drive them without a terminal.

pub mod args;
pub mod cluster;
mod command;
mod keyring_verbs;
mod keys;
mod listing;
mod protect;
pub mod reseal;
mod rotate;

pub use cluster::{Cluster, NoCluster, WorkloadRef};
pub use command::{print, seal, secret, CommandError};
pub use keyring_verbs::{check_retirable, keys, ls_table, protector_from, unlock};
pub use keys::{file_public_keys, load_or_create_keyring, public_keys_from_file, sealing_keys};
pub use listing::{ls, Filter, LsFormat};
pub use protect::protected_report;
pub use rotate::{move_references, next_version, rotate, Rotation};

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::seal::PublicKeys;
use crate::store::{object_name, RunSecret, SecretRecord, Store, StoreError};

/// Parses `KEY=VALUE` labels.
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, String> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("invalid label {l:?}: use KEY=VALUE")),
        })
        .collect()
}

/// `secret create`: seals and stores; returns the new id.
pub fn create(
    store: &dyn Store,
    keys: &PublicKeys,
    namespace: &str,
    name: &str,
    data: Zeroizing<Vec<u8>>,
    labels: BTreeMap<String, String>,
    service_accounts: Vec<String>,
) -> Result<String, StoreError> {
    let record = SecretRecord::seal(keys, namespace, name, &data, labels, service_accounts)?;
    store.create(&record)?;
    Ok(record.id)
}

/// `secret inspect`: the records as JSON, without the ciphertext (the value is never shown).
pub fn inspect(
    store: &dyn Store,
    namespace: &str,
    names: &[String],
    pretty: bool,
) -> Result<String, StoreError> {
    let mut out = Vec::new();
    for name in names {
        let record = store
            .get(namespace, name)?
            .ok_or_else(|| StoreError::NotFound(name.clone()))?;
        out.push(record);
    }
    if pretty {
        let mut text = String::new();
        for r in &out {
            text.push_str(&format!(
                "ID:               {}\nName:             {}\nNamespace:        {}\nLabels:\n{}Size:             {} bytes\nKey:              {}\nDigest:           {}\nService accounts: {}\nCreated at:       {}\nUpdated at:       {}\n",
                r.id,
                r.name,
                r.namespace,
                r.labels.iter().map(|(k, v)| format!(" - {k}={v}\n")).collect::<String>(),
                r.spec.size,
                r.spec.key_id,
                r.spec.digest,
                if r.spec.service_accounts.is_empty() { "(any in the namespace)".to_string() } else { r.spec.service_accounts.join(", ") },
                r.created,
                r.updated,
            ));
        }
        return Ok(text);
    }
    let values: Vec<serde_json::Value> = out
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
                spec.remove("ciphertext");
            }
            v
        })
        .collect();
    Ok(serde_json::to_string_pretty(&values).unwrap_or_default())
}

/// `secret rm`: removes each name; a missing one is an error after the others are removed.
/// A secret that a pod still declares is not removed (Swarm refuses while a service uses it).
pub fn rm(
    store: &dyn Store,
    cluster: &dyn Cluster,
    namespace: &str,
    names: &[String],
) -> Result<String, StoreError> {
    // Every name is checked before any is removed, so a refusal removes nothing.
    for name in names {
        let pods = cluster.pods_using(namespace, name)?;
        if !pods.is_empty() {
            return Err(StoreError::InUse {
                name: name.clone(),
                pods,
            });
        }
    }
    let mut out = String::new();
    let mut missing = None;
    for name in names {
        if store.delete(namespace, name)? {
            out.push_str(name);
            out.push('\n');
        } else {
            missing.get_or_insert_with(|| name.clone());
        }
    }
    match missing {
        Some(name) => Err(StoreError::NotFound(name)),
        None => Ok(out),
    }
}

/// `seal`: a `RunSecret` manifest, safe to commit and `kubectl apply`.
pub fn seal_manifest(
    keys: &PublicKeys,
    namespace: &str,
    name: &str,
    data: Zeroizing<Vec<u8>>,
    labels: BTreeMap<String, String>,
    service_accounts: Vec<String>,
) -> Result<String, StoreError> {
    let resource = sealed_resource(keys, namespace, name, &data, labels, service_accounts)?;
    Ok(serde_norway::to_string(&resource).unwrap_or_default())
}

/// The `RunSecret` object for a value sealed offline: what `seal` prints and what
/// `compose convert` writes for each secret.
pub fn sealed_resource(
    keys: &PublicKeys,
    namespace: &str,
    name: &str,
    data: &[u8],
    labels: BTreeMap<String, String>,
    service_accounts: Vec<String>,
) -> Result<RunSecret, StoreError> {
    let record = SecretRecord::seal(
        keys,
        namespace,
        name,
        data,
        labels.clone(),
        service_accounts,
    )?;
    let mut resource = RunSecret::new(&object_name(name), record.spec);
    resource.metadata.namespace = Some(namespace.to_string());
    if !labels.is_empty() {
        resource.metadata.labels = Some(labels);
    }
    Ok(resource)
}

#[cfg(test)]
mod tests;
