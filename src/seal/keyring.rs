//! The keyring: key pairs with ids, each of a suite (X25519 or X-Wing). New keys are added,
//! old ones kept so existing secrets still open; the newest seals. Private keys live in
//! zeroizing buffers and never appear in Debug output.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::{Deserializable, Kem, Serializable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::protector::ProtectError;
use super::{hex, now_rfc3339, SealError, Suite, KEY_ID_LEN};

/// One key pair of the keyring.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: String,
    /// RFC 3339 creation time, for people; the order of the list is what counts.
    pub created: String,
    /// Keyrings from before suites have none: theirs are X25519 keys.
    #[serde(default)]
    suite: Suite,
    /// Base64 of the 32-byte private key: the X25519 scalar, or the X-Wing seed that the
    /// ML-KEM-768 and X25519 keys are expanded from.
    private: Zeroizing<String>,
    /// The private key parsed, on first use: parsing an X-Wing seed expands it (an ML-KEM-768
    /// key generation), which every open would otherwise repeat. Wiped on drop by the KEM
    /// crates (x25519-dalek, x-wing).
    #[serde(skip)]
    parsed: OnceLock<Decap>,
}

/// A private key ready to decapsulate with.
#[derive(Clone)]
pub(super) enum Decap {
    X25519(<X25519HkdfSha256 as Kem>::PrivateKey),
    /// Boxed: the expanded key is 1.6 KB.
    XWing(Box<<XWing as Kem>::PrivateKey>),
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("created", &self.created)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// A public key as published for offline sealing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub id: String,
    pub created: String,
    /// Public-key files from before suites have none: theirs are X25519 keys.
    #[serde(default)]
    pub suite: Suite,
    /// The raw public key (base64 in JSON): 32 bytes for X25519, 1216 for X-Wing.
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
}

impl PublicKey {
    pub(super) fn bad(&self) -> SealError {
        SealError::BadKey {
            key: self.id.clone(),
            suite: self.suite,
        }
    }
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
    fn generate(suite: Suite, created: String) -> Self {
        let (private, public) = match suite {
            Suite::X25519 => pair::<X25519HkdfSha256>(),
            Suite::XWing => pair::<XWing>(),
        };
        Self {
            id: key_id(&public),
            created,
            suite,
            private,
            parsed: OnceLock::new(),
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The private key, parsed once for this entry's suite.
    pub(super) fn decap(&self) -> Result<&Decap, SealError> {
        if let Some(parsed) = self.parsed.get() {
            return Ok(parsed);
        }
        let parsed = match self.suite {
            Suite::X25519 => Decap::X25519(self.parse::<X25519HkdfSha256>()?),
            Suite::XWing => Decap::XWing(Box::new(self.parse::<XWing>()?)),
        };
        Ok(self.parsed.get_or_init(|| parsed))
    }

    /// The private key's bytes, for deriving the reseal tag key (see `reseal_tag`).
    pub(super) fn private_bytes(&self) -> Result<Zeroizing<Vec<u8>>, SealError> {
        B64.decode(self.private.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| self.bad())
    }

    fn parse<K: Kem>(&self) -> Result<K::PrivateKey, SealError> {
        let raw = Zeroizing::new(
            B64.decode(self.private.as_bytes())
                .map_err(|_| self.bad())?,
        );
        K::PrivateKey::from_bytes(&raw).map_err(|_| self.bad())
    }

    pub fn public(&self) -> Result<PublicKey, SealError> {
        let bytes = match self.decap()? {
            Decap::X25519(sk) => X25519HkdfSha256::sk_to_pk(sk).to_bytes().to_vec(),
            Decap::XWing(sk) => XWing::sk_to_pk(sk).to_bytes().to_vec(),
        };
        Ok(PublicKey {
            id: self.id.clone(),
            created: self.created.clone(),
            suite: self.suite,
            bytes,
        })
    }

    fn bad(&self) -> SealError {
        SealError::BadKey {
            key: self.id.clone(),
            suite: self.suite,
        }
    }
}

/// A new key pair of `K`: the private key in base64 (in a wiped buffer) and the public key.
fn pair<K: Kem>() -> (Zeroizing<String>, Vec<u8>) {
    let (sk, pk) = K::gen_keypair();
    let mut raw = Zeroizing::new(vec![0u8; K::PrivateKey::size()]);
    sk.write_exact(&mut raw);
    (Zeroizing::new(B64.encode(&*raw)), pk.to_bytes().to_vec())
}

/// All keys, oldest first; the newest (last) seals, any opens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Keyring {
    keys: Vec<KeyEntry>,
}

impl Keyring {
    /// A keyring with one new X25519 key, as a keyring starts.
    pub fn generate() -> Self {
        Self::generate_with(Suite::X25519)
    }

    /// A keyring with one new key of `suite`.
    pub fn generate_with(suite: Suite) -> Self {
        let mut ring = Self::default();
        ring.add_key(suite);
        ring
    }

    /// Adds a new key of `suite`, which seals from now on; returns its id.
    pub fn add_key(&mut self, suite: Suite) -> String {
        let entry = KeyEntry::generate(suite, now_rfc3339());
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

    /// The suite of the sealing key: what a renewal keeps.
    pub fn newest_suite(&self) -> Option<Suite> {
        self.keys.last().map(|k| k.suite)
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
    pub fn to_json(&self) -> Result<Zeroizing<String>, ProtectError> {
        serde_json::to_string_pretty(self)
            .map(Zeroizing::new)
            .map_err(|source| ProtectError::Serialize {
                what: "keyring",
                source,
            })
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
