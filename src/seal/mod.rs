//! Sealing: HPKE (RFC 9180) with HKDF-SHA256 and ChaCha20-Poly1305, and the key's suite as the
//! KEM: DHKEM(X25519, HKDF-SHA256), or the X-Wing hybrid (X25519 + ML-KEM-768). Anyone holding
//! a public key can seal offline; only the server's keyring opens. The AEAD's associated data
//! binds the secret's `namespace/name` and the key id, so ciphertext copied to another secret,
//! another namespace or another key id does not open. The byte layout is in [`envelope`].

mod envelope;
mod keyring;
pub mod live;
pub mod protector;
mod reseal_tag;
mod suite;
pub mod wrapped;

pub use keyring::{KeyEntry, Keyring, PublicKey, PublicKeys};
pub use live::LiveKeyring;
pub use reseal_tag::{reseal_tag, verify_reseal_tag, ResealBinding};
pub use suite::{Suite, SuiteIds};

use envelope::{Parts, Version, TAG_LEN};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use keyring::Decap;
use zeroize::Zeroizing;

/// Length of a key id: 16 hex digits of the SHA-256 of the public key.
pub const KEY_ID_LEN: usize = 16;

/// Why sealing or opening failed. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("ciphertext is not a runsecrets envelope (bad header or too short)")]
    Malformed,
    #[error(
        "ciphertext is in envelope format RSE{0}, which this runsecrets does not read (it reads \
         RSE1 and RSE2): upgrade runsecrets"
    )]
    UnknownFormat(char),
    #[error(
        "ciphertext was sealed with an HPKE suite this runsecrets does not open ({0}; it opens \
         x25519 and xwing with HKDF-SHA256 and ChaCha20-Poly1305): upgrade runsecrets"
    )]
    UnknownSuite(SuiteIds),
    #[error("ciphertext was sealed with key {0}, which this keyring does not hold")]
    UnknownKey(String),
    #[error(
        "ciphertext names suite {sealed} but key {key} is an {held} key: the envelope was altered"
    )]
    SuiteMismatch {
        key: String,
        held: Suite,
        sealed: Suite,
    },
    #[error(
        "ciphertext does not open: it was altered, or it belongs to another secret or namespace"
    )]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("the keyring holds no key")]
    NoKey,
    #[error("key {key} is not a valid {suite} key")]
    BadKey { key: String, suite: Suite },
    /// The keyring's text is not a keyring: says where, never what (it holds private keys).
    #[error("it is not a runsecrets keyring ({0})")]
    NotAKeyring(String),
    #[error("key {0} does not match its id: the keyring was edited")]
    KeyIdMismatch(String),
    #[error("key {0} is the one new secrets are sealed with: run `runsecrets keys rotate` first")]
    SealingKey(String),
}

/// Lowercase hex, the form every digest and key id of runsecrets is written in.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The current time in RFC 3339, as keys and records show it.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The associated data: what the ciphertext is bound to.
fn aad(namespace: &str, name: &str, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + namespace.len() + name.len());
    aad.extend_from_slice(b"runsecrets.io/v1\0");
    aad.extend_from_slice(namespace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// Seals `plaintext` for secret `namespace/name` to `key`, in the envelope format of its
/// suite (see [`envelope`]).
pub fn seal(
    key: &PublicKey,
    namespace: &str,
    name: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    // A public key from a file is checked against its id, so an envelope never names a key
    // other than the one it was sealed to.
    if keyring::key_id(&key.bytes) != key.id {
        return Err(key.bad());
    }
    let version = Version::for_suite(key.suite);
    match key.suite {
        Suite::X25519 => seal_with::<X25519HkdfSha256>(version, key, namespace, name, plaintext),
        Suite::XWing => seal_with::<XWing>(version, key, namespace, name, plaintext),
    }
}

fn seal_with<K: hpke::Kem>(
    version: Version,
    key: &PublicKey,
    namespace: &str,
    name: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let pk = K::PublicKey::from_bytes(&key.bytes).map_err(|_| key.bad())?;
    let (encapped, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, K>(
        &OpModeS::Base,
        &pk,
        version.info(),
        plaintext,
        &aad(namespace, name, &key.id),
    )
    .map_err(|_| SealError::Seal)?;
    Ok(envelope::frame(
        version,
        key.suite,
        &key.id,
        &encapped.to_bytes(),
        &ciphertext,
    ))
}

/// What an envelope's header says, read without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub suite: Suite,
    pub key_id: &'a str,
    /// Length of the plaintext inside.
    pub plaintext_len: usize,
}

/// Reads an envelope's header: its suite, the key it names and the size of what it holds.
pub fn header(envelope: &[u8]) -> Result<Header<'_>, SealError> {
    let parts = envelope::parse(envelope)?;
    Ok(Header {
        suite: parts.suite,
        key_id: parts.key_id,
        plaintext_len: parts.ciphertext.len() - TAG_LEN,
    })
}

/// Opens an envelope for secret `namespace/name` with whichever key of `keyring` it names.
pub fn open(
    keyring: &Keyring,
    namespace: &str,
    name: &str,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let parts = envelope::parse(envelope)?;
    let entry = keyring
        .find(parts.key_id)
        .ok_or_else(|| SealError::UnknownKey(parts.key_id.to_string()))?;
    if entry.suite() != parts.suite {
        return Err(SealError::SuiteMismatch {
            key: entry.id.clone(),
            held: entry.suite(),
            sealed: parts.suite,
        });
    }
    let aad = aad(namespace, name, parts.key_id);
    match entry.decap()? {
        Decap::X25519(sk) => open_with::<X25519HkdfSha256>(sk, &parts, &aad),
        Decap::XWing(sk) => open_with::<XWing>(sk, &parts, &aad),
    }
}

fn open_with<K: hpke::Kem>(
    sk: &K::PrivateKey,
    parts: &Parts<'_>,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let encapped = K::EncappedKey::from_bytes(parts.encapped).map_err(|_| SealError::Malformed)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, K>(
        &OpModeR::Base,
        sk,
        &encapped,
        parts.version.info(),
        parts.ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| SealError::Open)
}

/// Opens an envelope of `namespace/name` and seals the same value to `newest`: the value is
/// held only in a wiped buffer between the two.
pub fn reseal(
    keyring: &Keyring,
    newest: &PublicKey,
    namespace: &str,
    name: &str,
    envelope: &[u8],
) -> Result<Vec<u8>, SealError> {
    let plaintext = open(keyring, namespace, name, envelope)?;
    seal(newest, namespace, name, &plaintext)
}

#[cfg(test)]
mod tests;
