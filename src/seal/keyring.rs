//! The keyring: X25519 key pairs with ids. New keys are added, old ones kept so existing
//! secrets still open; the newest seals. Private keys live in zeroizing buffers and never
//! appear in Debug output.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, Serializable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{hex, now_rfc3339, SealError, KEY_ID_LEN};

type Kem = X25519HkdfSha256;

/// One key pair of the keyring.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: String,
    /// RFC 3339 creation time, for people; the order of the list is what counts.
    pub created: String,
    /// Base64 of the 32-byte X25519 private key.
    private: Zeroizing<String>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A public key as published for offline sealing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub id: String,
    pub created: String,
    /// Raw 32-byte X25519 public key (base64 in JSON).
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
}

/// The published set of public keys (the `GET /v1/keys` and `--key` file format), oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    pub keys: Vec<PublicKey>,
}

impl PublicKeys {
    /// The key new secrets are sealed with: the last one.
    pub fn newest(&self) -> Result<&PublicKey, SealError> {
        self.keys.last().ok_or(SealError::NoKey)
    }
}

pub(super) mod b64 {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Key id: 16 hex digits of the SHA-256 of the public key, so anyone can check which key an
/// envelope names.
pub(super) fn key_id(public: &[u8]) -> String {
    hex(&Sha256::digest(public)[..KEY_ID_LEN / 2])
}

impl KeyEntry {
    fn generate(created: String) -> Self {
        let (sk, pk) = Kem::gen_keypair();
        let private = Zeroizing::new(B64.encode(sk.to_bytes()));
        Self {
            id: key_id(&pk.to_bytes()),
            created,
            private,
        }
    }

    pub(super) fn private_key(&self) -> Result<<Kem as hpke::Kem>::PrivateKey, SealError> {
        let raw = Zeroizing::new(
            B64.decode(self.private.as_bytes())
                .map_err(|_| SealError::BadKey(self.id.clone()))?,
        );
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&raw)
            .map_err(|_| SealError::BadKey(self.id.clone()))
    }

    pub fn public(&self) -> Result<PublicKey, SealError> {
        let pk = Kem::sk_to_pk(&self.private_key()?);
        Ok(PublicKey {
            id: self.id.clone(),
            created: self.created.clone(),
            bytes: pk.to_bytes().to_vec(),
        })
    }
}

/// All keys, oldest first; the newest (last) seals, any opens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Keyring {
    keys: Vec<KeyEntry>,
}

impl Keyring {
    /// A keyring with one new key.
    pub fn generate() -> Self {
        let mut ring = Self::default();
        ring.add_key();
        ring
    }

    /// Adds a new key, which seals from now on; returns its id.
    pub fn add_key(&mut self) -> String {
        let entry = KeyEntry::generate(now_rfc3339());
        let id = entry.id.clone();
        self.keys.push(entry);
        id
    }

    /// The key new secrets are sealed with.
    pub fn newest(&self) -> Result<PublicKey, SealError> {
        self.keys.last().ok_or(SealError::NoKey)?.public()
    }

    /// Removes a key that no longer seals; the newest (sealing) key cannot be removed.
    pub fn remove_key(&mut self, id: &str) -> Result<(), SealError> {
        let last = self.keys.len().saturating_sub(1);
        match self.keys.iter().position(|k| k.id == id) {
            None => Err(SealError::UnknownKey(id.to_string())),
            Some(i) if i == last => Err(SealError::SealingKey(id.to_string())),
            Some(i) => {
                self.keys.remove(i);
                Ok(())
            }
        }
    }

    /// When the newest key was created; `None` when its time does not parse.
    pub fn newest_created(&self) -> Option<time::OffsetDateTime> {
        let created = &self.keys.last()?.created;
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339).ok()
    }

    pub fn find(&self, id: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }

    /// The public halves, for sealing elsewhere.
    pub fn public_keys(&self) -> Result<PublicKeys, SealError> {
        Ok(PublicKeys {
            keys: self
                .keys
                .iter()
                .map(KeyEntry::public)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Serialised with the private keys: store it like a private key (mode 0600, a Secret).
    pub fn to_json(&self) -> Zeroizing<String> {
        Zeroizing::new(serde_json::to_string_pretty(self).unwrap_or_default())
    }

    /// Reads a keyring; the error never quotes the input.
    pub fn from_json(text: &str) -> Result<Self, SealError> {
        let ring: Keyring = serde_json::from_str(text).map_err(|e| {
            SealError::NotAKeyring(crate::admission::workload::describe_json_error(&e))
        })?;
        if ring.keys.is_empty() {
            return Err(SealError::NoKey);
        }
        for key in &ring.keys {
            if key_id(&key.public()?.bytes) != key.id {
                return Err(SealError::KeyIdMismatch(key.id.clone()));
            }
        }
        Ok(ring)
    }
}
