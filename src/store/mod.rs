//! Where sealed secrets live. One trait, so the CLI and the server work the same against the
//! embedded file store (a single machine, development) and, later, the Kubernetes API.
//! Records hold ciphertext only: no plaintext and no digest of it (a hash of a low-entropy
//! password can be brute-forced); the digest is of the ciphertext.

pub mod catalogue;
mod file;
pub mod keyring;
pub mod kubernetes;
pub mod resource;
pub mod rotation;

pub use file::FileStore;
pub use resource::{object_name, RunSecret, RunSecretSpec};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::seal;
use crate::spec;

/// Swarm's limit: a secret is at most 500 KiB, and not empty.
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// The immutable part of a stored secret: the `RunSecret` spec.
pub type SecretSpec = RunSecretSpec;

/// A stored secret: identity, labels (the only mutable part, as in Swarm) and spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRecord {
    pub namespace: String,
    pub name: String,
    /// Swarm-style id: 25 lowercase hex digits derived from namespace, name and ciphertext.
    pub id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created: String,
    pub updated: String,
    pub spec: SecretSpec,
}

/// A store failure; names the step and the secret, never a value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("secret {namespace}/{name} already exists")]
    AlreadyExists { namespace: String, name: String },
    /// The namespace as [`spec::quoted`] shows it.
    #[error("invalid namespace {0}: use 1-63 of [a-z0-9-], alphanumeric at both ends")]
    Namespace(String),
    /// Swarm's own wording.
    #[error("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]")]
    Name,
    #[error("secret data must be larger than 0 and less than 512000 bytes (got {0})")]
    Size(usize),
    /// Swarm's wording, with pods where Swarm has services.
    #[error("secret '{name}' is in use by the following pods: {}", pods.join(", "))]
    InUse { name: String, pods: Vec<String> },
    /// A verb that works on stored secrets was given no store.
    #[error("no secret store: use --store file:DIR or --store kubernetes")]
    NoStore,
    #[error("No such secret: {0}")]
    NotFound(String),
    /// Another writer changed the secret between our read and our write; nothing was written.
    #[error("secret {namespace}/{name} changed while it was being rewritten; nothing was overwritten: run the command again")]
    Changed { namespace: String, name: String },
    #[error("sealing")]
    Seal(#[from] seal::SealError),
    #[error("{step} {path}")]
    Io {
        step: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a readable secret record")]
    Corrupt { path: String },
    /// Turning something into the text that is written failed: nothing was written.
    #[error("serializing {what}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A file in the store that is not what it claims to be: refused, never followed.
    #[error("refusing the secret record {path}: {why}")]
    Refused { path: String, why: &'static str },
    /// The record's own fields disagree with its ciphertext: it was edited.
    #[error("secret {secret}: the record's {field} does not match its ciphertext; the record was altered")]
    Altered { secret: String, field: &'static str },
    /// The keyring cannot be read, created or used; the cause (an I/O error or what is wrong
    /// with its content) is the source, so it is said once.
    #[error("{step} the keyring {place}")]
    Keyring {
        step: &'static str,
        place: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// ssh's rule for private keys: a keyring others could read or change is not used.
    #[error(
        "keyring {path} is open to other users (mode {mode:04o}) and holds private keys; \
         refusing to use it: run `chmod 600 {path}`"
    )]
    KeyringMode { path: String, mode: u32 },
    /// A key that still opens stored secrets is kept.
    #[error("key {key} still opens {} stored secret(s): {}; move them to the newest key with `runsecrets secret reseal` first", secrets.len(), secrets.join(", "))]
    KeyInUse { key: String, secrets: Vec<String> },
    /// Another writer changed the keyring between our read and our write; nothing was lost.
    #[error("the keyring {place} changed while it was being rewritten; nothing was overwritten: run the command again")]
    KeyringChanged { place: String },
    /// A Kubernetes API call failed; the text is the apiserver's status, never a body we sent.
    #[error("{step}: {message}")]
    Api { step: &'static str, message: String },
}

/// Wraps an I/O error with the step and the path it happened on.
pub(crate) fn io_error<'a>(
    step: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        step,
        path: path.display().to_string(),
        source,
    }
}

/// Checks a namespace name (DNS-1123 label), which also keeps it a single path component.
pub fn check_namespace(namespace: &str) -> Result<(), StoreError> {
    let b = namespace.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        let shown = spec::quoted(namespace, 63, spec::name_char);
        Err(StoreError::Namespace(
            shown.unwrap_or_else(|| "(not a name)".into()),
        ))
    }
}

/// `sha256:<hex>` of an envelope: what records carry instead of any digest of the plaintext.
pub fn envelope_digest(envelope: &[u8]) -> String {
    format!("sha256:{}", seal::hex(&Sha256::digest(envelope)))
}

impl SecretRecord {
    /// Seals `plaintext` with the newest public key into a new record, checking Swarm's name
    /// and size rules first.
    pub fn seal(
        keys: &seal::PublicKeys,
        namespace: &str,
        name: &str,
        plaintext: &[u8],
        labels: BTreeMap<String, String>,
        service_accounts: Vec<String>,
    ) -> Result<Self, StoreError> {
        use base64::Engine;
        check_namespace(namespace)?;
        spec::check_name(name).map_err(|_| StoreError::Name)?;
        if plaintext.is_empty() || plaintext.len() >= MAX_SECRET_BYTES {
            return Err(StoreError::Size(plaintext.len()));
        }
        let key = keys.newest()?;
        let envelope = seal::seal(key, namespace, name, plaintext)?;
        let digest = envelope_digest(&envelope);
        let now = seal::now_rfc3339();
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            id: Self::derive_id(namespace, name, &digest),
            labels,
            created: now.clone(),
            updated: now,
            spec: SecretSpec {
                name: name.to_string(),
                ciphertext: base64::engine::general_purpose::STANDARD.encode(&envelope),
                key_id: key.id.clone(),
                size: i64::try_from(plaintext.len())
                    .map_err(|_| StoreError::Size(plaintext.len()))?,
                digest,
                service_accounts,
            },
        })
    }

    /// Swarm-style id: 25 hex digits of a hash of namespace, name and envelope digest, so every
    /// backend shows the same id for the same secret.
    pub fn derive_id(namespace: &str, name: &str, digest: &str) -> String {
        let mut idh = Sha256::new();
        idh.update(namespace.as_bytes());
        idh.update([0]);
        idh.update(name.as_bytes());
        idh.update([0]);
        idh.update(digest.as_bytes());
        seal::hex(&idh.finalize())[..25].to_string()
    }

    /// The envelope bytes, checked against the recorded digest, key id and size.
    pub fn envelope(&self) -> Result<Vec<u8>, StoreError> {
        use base64::Engine;
        let altered = |field| StoreError::Altered {
            secret: format!("{}/{}", self.namespace, self.name),
            field,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.spec.ciphertext)
            .map_err(|_| altered("ciphertext"))?;
        if envelope_digest(&bytes) != self.spec.digest {
            return Err(altered("digest"));
        }
        let header = seal::header(&bytes)?;
        if header.key_id != self.spec.key_id {
            return Err(altered("keyId"));
        }
        if i64::try_from(header.plaintext_len).ok() != Some(self.spec.size) {
            return Err(altered("size"));
        }
        Ok(bytes)
    }

    /// Opens the secret as `namespace/name`, the name it was asked for: the envelope is bound
    /// to that name, whatever the record says of itself. The value is zeroized when dropped.
    pub fn unseal(
        &self,
        keyring: &seal::Keyring,
        namespace: &str,
        name: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
        Ok(seal::open(keyring, namespace, name, &self.envelope()?)?)
    }
}

/// The operations the CLI and the server need from a backend.
pub trait Store {
    /// Creates a secret; an existing name is an error (secrets are immutable).
    fn create(&self, record: &SecretRecord) -> Result<(), StoreError>;
    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError>;
    /// Every secret of a namespace, or of all namespaces, sorted by namespace and name.
    fn list(&self, namespace: Option<&str>) -> Result<Vec<SecretRecord>, StoreError>;
    /// Removes a secret; false when it did not exist.
    fn delete(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;
    /// Replaces `old`, as it was read, by its resealed record `new` (`secret reseal`: the same
    /// value sealed to a newer key), in one step that readers see whole: a rename under the
    /// namespace's lock in the file store, one update at the object's resourceVersion in
    /// Kubernetes. A secret removed meanwhile is [`StoreError::NotFound`] and stays removed; one
    /// changed meanwhile (recreated with another value, resealed by someone else) is
    /// [`StoreError::Changed`] and stays as the other writer left it. `tag` is the server's
    /// reseal tag: Kubernetes stores it as the `runsecrets.io/reseal-tag` annotation the
    /// webhook checks; the file store, which no webhook guards (its files' permissions decide
    /// who writes), has no place for it.
    fn replace(&self, old: &SecretRecord, new: &SecretRecord, tag: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests;
