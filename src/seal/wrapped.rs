//! The wrapped keyring: the private keys encrypted under a key that is not stored beside them
//! (a data key encrypted by an HSM, or a key derived from an unlock key). The public keys and
//! ids stay readable, so the public-key ConfigMap and `GET /v1/keys` need no unwrapping, and a
//! locked server can still say which keys it holds.
//!
//! ```json
//! {"format": "runsecrets.io/wrapped-keyring/v1", "keyringId": "<32 hex>",
//!  "protector": {"kind": "pkcs11" | "autolock", ...},
//!  "keys": [{"id", "created", "bytes"}], "nonce": "<base64>", "ciphertext": "<base64>"}
//! ```
//!
//! `ciphertext` is ChaCha20-Poly1305 of the plain keyring's JSON under the payload key; its
//! associated data binds the format version, the keyring id, the protector kind and a digest
//! of the public key list (suites included), so a wrapped keyring edited anywhere, spliced
//! from another keyring or relabelled as another protector does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keyring::{b64, Keyring, PublicKeys};
use super::protector::ProtectError;
use super::{hex, PublicKey, Suite};

/// The format tag of wrapped keyrings; a later version gets a new tag.
pub const WRAPPED_FORMAT: &str = "runsecrets.io/wrapped-keyring/v1";
const NONCE_LEN: usize = 12;
/// Length of every key-encryption and payload key.
pub const PAYLOAD_KEY_LEN: usize = 32;

/// The key the private keys are encrypted under, held only in memory.
pub type PayloadKey = Zeroizing<[u8; PAYLOAD_KEY_LEN]>;

/// What protects the payload key, as stored (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum ProtectorRecord {
    /// A random payload key, encrypted by an AES key that never leaves the token (AES-GCM in
    /// the token: 12-byte IV, then ciphertext and 16-byte tag).
    #[serde(rename_all = "camelCase")]
    Pkcs11 {
        token: String,
        key: String,
        #[serde(with = "b64")]
        wrapped_key: Vec<u8>,
    },
    /// The payload key is Argon2id of the unlock key with these parameters.
    #[serde(rename_all = "camelCase")]
    Autolock {
        kdf: String,
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        #[serde(with = "b64")]
        salt: Vec<u8>,
    },
}

impl ProtectorRecord {
    /// The kind, as the associated data binds it and messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtectorRecord::Pkcs11 { .. } => "pkcs11",
            ProtectorRecord::Autolock { .. } => "autolock",
        }
    }
}

/// A keyring as stored when protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WrappedKeyring {
    pub format: String,
    pub keyring_id: String,
    pub protector: ProtectorRecord,
    pub keys: Vec<PublicKey>,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

/// A stored keyring of either form, told apart by the wrapped form's `format` field.
pub enum StoredKeyring {
    Plain(Keyring),
    Wrapped(WrappedKeyring),
}

/// Reads only the format tag, so the private keys of a plain keyring are not copied into a
/// generic value on the way.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    format: Option<String>,
}

impl StoredKeyring {
    /// Parses either form; the error says where the text breaks, never what it holds.
    pub fn parse(text: &str) -> Result<Self, ProtectError> {
        let probe: Probe = serde_json::from_str(text).map_err(|e| {
            ProtectError::Seal(super::SealError::NotAKeyring(
                crate::admission::workload::describe_json_error(&e),
            ))
        })?;
        match probe.format.as_deref() {
            None => Ok(StoredKeyring::Plain(Keyring::from_json(text)?)),
            Some(WRAPPED_FORMAT) => {
                let wrapped: WrappedKeyring = serde_json::from_str(text).map_err(|e| {
                    ProtectError::Seal(super::SealError::NotAKeyring(
                        crate::admission::workload::describe_json_error(&e),
                    ))
                })?;
                wrapped.check_shape()?;
                Ok(StoredKeyring::Wrapped(wrapped))
            }
            Some(other) => Err(ProtectError::UnknownFormat(
                other.chars().take(64).collect(),
            )),
        }
    }

    /// The public keys, readable in both forms.
    pub fn public_keys(&self) -> Result<PublicKeys, ProtectError> {
        match self {
            StoredKeyring::Plain(ring) => Ok(ring.public_keys()?),
            StoredKeyring::Wrapped(wrapped) => Ok(PublicKeys {
                keys: wrapped.keys.clone(),
            }),
        }
    }
}

/// A key as both stored forms list it: what renewal decides from, read without touching a
/// private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedKey {
    pub id: String,
    pub created: String,
    #[serde(default)]
    pub suite: Suite,
}

impl ListedKey {
    pub fn of(key: &PublicKey) -> Self {
        Self {
            id: key.id.clone(),
            created: key.created.clone(),
            suite: key.suite,
        }
    }
}

#[derive(Deserialize)]
struct Listing {
    keys: Vec<ListedKey>,
}

impl StoredKeyring {
    /// The keys' ids, creation times and suites from either form's text, oldest first. A plain
    /// keyring's private keys are skipped, not parsed: parsing one derives its public key (for
    /// X-Wing an ML-KEM-768 key expansion), which a check every few seconds should not repeat.
    pub fn listing(text: &str) -> Result<Vec<ListedKey>, ProtectError> {
        let listing: Listing = serde_json::from_str(text).map_err(|e| {
            ProtectError::Seal(super::SealError::NotAKeyring(
                crate::admission::workload::describe_json_error(&e),
            ))
        })?;
        Ok(listing.keys)
    }
}

/// A fresh random key, nonce or id.
pub(crate) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, ProtectError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(bytes.as_mut()).map_err(|_| ProtectError::Random)?;
    Ok(bytes)
}

impl WrappedKeyring {
    /// Encrypts `ring` under `payload_key`; `keyring_id` names the keyring for good (a
    /// rewrap after a rotation keeps it).
    pub fn seal(
        ring: &Keyring,
        keyring_id: &str,
        protector: ProtectorRecord,
        payload_key: &PayloadKey,
    ) -> Result<Self, ProtectError> {
        let mut wrapped = WrappedKeyring {
            format: WRAPPED_FORMAT.to_string(),
            keyring_id: keyring_id.to_string(),
            protector,
            keys: ring.public_keys()?.keys,
            nonce: random::<NONCE_LEN>()?.to_vec(),
            ciphertext: Vec::new(),
        };
        let plain = ring.to_json()?;
        let aad = wrapped.aad()?;
        wrapped.ciphertext = cipher(payload_key)?
            .encrypt(
                wrapped
                    .nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| ProtectError::Encrypt)?,
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| ProtectError::Encrypt)?;
        Ok(wrapped)
    }

    /// Decrypts the private keys with `payload_key` and checks they are the keys listed.
    pub fn open(&self, payload_key: &PayloadKey) -> Result<Keyring, ProtectError> {
        let nonce = self
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| self.tampered())?;
        let plain = Zeroizing::new(
            cipher(payload_key)?
                .decrypt(
                    nonce,
                    Payload {
                        msg: &self.ciphertext,
                        aad: &self.aad()?,
                    },
                )
                .map_err(|_| self.does_not_open())?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| self.tampered())?;
        let ring = Keyring::from_json(text).map_err(|_| self.tampered())?;
        if ring.public_keys()?.keys != self.keys {
            return Err(self.tampered());
        }
        Ok(ring)
    }

    /// Text to store: the JSON of this wrapped keyring (no secret in it).
    pub fn to_json(&self) -> Result<String, ProtectError> {
        serde_json::to_string_pretty(self).map_err(|source| ProtectError::Serialize {
            what: "wrapped keyring",
            source,
        })
    }

    /// Checks what can be checked without the key: a 32-hex id, a 12-byte nonce, key ids
    /// that match their public keys.
    fn check_shape(&self) -> Result<(), ProtectError> {
        let id_ok = self.keyring_id.len() == 32
            && self
                .keyring_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !id_ok || self.nonce.len() != NONCE_LEN || self.keys.is_empty() {
            return Err(ProtectError::Tampered(
                self.keyring_id.chars().take(32).collect(),
            ));
        }
        for key in &self.keys {
            if super::keyring::key_id(&key.bytes) != key.id
                || key.bytes.len() != key.suite.public_key_len()
            {
                return Err(self.tampered());
            }
        }
        Ok(())
    }

    /// Binds the version, the keyring, the protector's kind and the public keys.
    fn aad(&self) -> Result<Vec<u8>, ProtectError> {
        let keys: Vec<BoundKey<'_>> = self.keys.iter().map(BoundKey::from).collect();
        let keys = serde_json::to_vec(&keys).map_err(|source| ProtectError::Serialize {
            what: "public keys the wrapping binds",
            source,
        })?;
        let mut aad = Vec::with_capacity(128);
        aad.extend_from_slice(WRAPPED_FORMAT.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.keyring_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.protector.kind().as_bytes());
        aad.push(0);
        aad.extend_from_slice(hex(&Sha256::digest(&keys)).as_bytes());
        Ok(aad)
    }

    fn tampered(&self) -> ProtectError {
        ProtectError::Tampered(self.keyring_id.clone())
    }

    /// The payload key was wrong: another unlock key or HSM key, or an altered keyring (the
    /// two cannot be told apart, by design of the AEAD).
    fn does_not_open(&self) -> ProtectError {
        match &self.protector {
            ProtectorRecord::Autolock { .. } => {
                ProtectError::WrongUnlockKey(self.keyring_id.clone())
            }
            ProtectorRecord::Pkcs11 { .. } => ProtectError::Tampered(self.keyring_id.clone()),
        }
    }

    /// The associated data of the payload key's encryption in the token: the same binding
    /// minus the key list (the payload key is shared by every rewrap).
    pub(crate) fn key_aad(keyring_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(WRAPPED_FORMAT.as_bytes());
        aad.push(0);
        aad.extend_from_slice(keyring_id.as_bytes());
        aad.extend_from_slice(b"\0pkcs11");
        aad
    }
}

/// A public key as the associated data digests it. X25519 keys are written exactly as before
/// keys had suites (`{id, created, bytes}`), so keyrings wrapped then still open; keys of any
/// other suite add it, so relabelling a key's suite is an edit the AEAD catches.
#[derive(Serialize)]
struct BoundKey<'a> {
    id: &'a str,
    created: &'a str,
    #[serde(skip_serializing_if = "Suite::is_x25519")]
    suite: Suite,
    #[serde(serialize_with = "b64::serialize")]
    bytes: &'a [u8],
}

impl<'a> From<&'a PublicKey> for BoundKey<'a> {
    fn from(key: &'a PublicKey) -> Self {
        BoundKey {
            id: &key.id,
            created: &key.created,
            suite: key.suite,
            bytes: &key.bytes,
        }
    }
}

fn cipher(key: &PayloadKey) -> Result<ChaCha20Poly1305, ProtectError> {
    ChaCha20Poly1305::new_from_slice(key.as_slice()).map_err(|_| ProtectError::Encrypt)
}

/// A new keyring id: 32 random hex digits.
pub fn new_keyring_id() -> Result<String, ProtectError> {
    Ok(hex(random::<16>()?.as_slice()))
}
