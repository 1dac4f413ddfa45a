//! Sealing: HPKE (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305.
//! Anyone holding a public key can seal offline; only the server's keyring opens. The AEAD's
//! associated data binds the secret's `namespace/name` and the key id, so ciphertext copied to
//! another secret, another namespace or another key id does not open.

mod keyring;
pub mod live;
pub mod protector;
pub mod wrapped;

pub use keyring::{KeyEntry, Keyring, PublicKey, PublicKeys};
pub use live::LiveKeyring;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

type Kem = X25519HkdfSha256;

/// First bytes of every envelope; the digit is the format version.
pub const MAGIC: &[u8; 4] = b"RSE1";
/// Length of a key id: 16 hex digits of the SHA-256 of the public key.
pub const KEY_ID_LEN: usize = 16;
const ENCAPPED_LEN: usize = 32;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + ENCAPPED_LEN;
/// HPKE `info`: the context every seal of this format shares.
const INFO: &[u8] = b"runsecrets.io secret v1";

/// Why sealing or opening failed. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("ciphertext is not a runsecrets envelope (bad header or too short)")]
    Malformed,
    #[error("ciphertext was sealed with key {0}, which this keyring does not hold")]
    UnknownKey(String),
    #[error(
        "ciphertext does not open: it was altered, or it belongs to another secret or namespace"
    )]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("the keyring holds no key")]
    NoKey,
    #[error("key {0} is not a valid X25519 key")]
    BadKey(String),
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

/// Seals `plaintext` for secret `namespace/name` to `key`; returns the envelope
/// `MAGIC | key id | encapsulated key | AEAD ciphertext`.
pub fn seal(
    key: &PublicKey,
    namespace: &str,
    name: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&key.bytes)
        .map_err(|_| SealError::BadKey(key.id.clone()))?;
    let (encapped, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        INFO,
        plaintext,
        &aad(namespace, name, &key.id),
    )
    .map_err(|_| SealError::Seal)?;
    let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key.id.as_bytes());
    out.extend_from_slice(&encapped.to_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// The key id an envelope names, without opening it.
pub fn key_id(envelope: &[u8]) -> Result<&str, SealError> {
    if envelope.len() < HEADER_LEN + TAG_LEN || &envelope[..MAGIC.len()] != MAGIC {
        return Err(SealError::Malformed);
    }
    let id = &envelope[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
    if !id.iter().all(|b| b.is_ascii_hexdigit()) {
        return Err(SealError::Malformed);
    }
    std::str::from_utf8(id).map_err(|_| SealError::Malformed)
}

/// Length of the plaintext inside an envelope.
pub fn plaintext_len(envelope: &[u8]) -> Result<usize, SealError> {
    key_id(envelope)?;
    Ok(envelope.len() - HEADER_LEN - TAG_LEN)
}

/// Opens an envelope for secret `namespace/name` with whichever key of `keyring` it names.
pub fn open(
    keyring: &Keyring,
    namespace: &str,
    name: &str,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let id = key_id(envelope)?;
    let entry = keyring
        .find(id)
        .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
    let sk = entry.private_key()?;
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(
        &envelope[MAGIC.len() + KEY_ID_LEN..HEADER_LEN],
    )
    .map_err(|_| SealError::Malformed)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &encapped,
        INFO,
        &envelope[HEADER_LEN..],
        &aad(namespace, name, id),
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
