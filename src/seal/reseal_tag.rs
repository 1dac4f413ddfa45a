//! The proof that `POST /v1/reseal` made an envelope. Without it, anyone allowed to update a
//! `RunSecret` could seal a guess of the (public) size with the (public) keys and submit it as
//! a reseal: the webhook's same-value check would answer whether the guess was right. The tag
//! is an HMAC only the keyring's holders can compute, over the secret, the stored envelope and
//! the new one, so a guess carries no valid tag and is refused before anything is opened.
//!
//! The MAC key is derived (HKDF-SHA256) from the private key the stored envelope was sealed to:
//! every replica holds the same keyring, so each derives the same key, and retiring that key
//! retires its tags too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Keyring, SealError};

/// Separates these tags from any other use of the same key material.
const DOMAIN: &[u8] = b"runsecrets.io/reseal-tag/v1";

/// What a tag binds: the secret, and the envelope digests before and after the reseal.
#[derive(Debug, Clone, Copy)]
pub struct ResealBinding<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// `sha256:<hex>` of the stored envelope.
    pub old_digest: &'a str,
    /// `sha256:<hex>` of the resealed envelope.
    pub new_digest: &'a str,
}

/// The HMAC over the binding, each field length-prefixed so no two bindings share a message.
fn mac(
    keyring: &Keyring,
    old_key_id: &str,
    binding: &ResealBinding<'_>,
) -> Result<Hmac<Sha256>, SealError> {
    let entry = keyring
        .find(old_key_id)
        .ok_or_else(|| SealError::UnknownKey(old_key_id.to_string()))?;
    let ikm = entry.private_bytes()?;
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(DOMAIN), &ikm)
        .expand(old_key_id.as_bytes(), key.as_mut())
        .map_err(|_| SealError::Malformed)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref())
        .map_err(|_| SealError::Malformed)?;
    for field in [
        DOMAIN,
        binding.namespace.as_bytes(),
        binding.name.as_bytes(),
        binding.old_digest.as_bytes(),
        binding.new_digest.as_bytes(),
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    Ok(mac)
}

/// The tag (base64) for a reseal of an envelope sealed to `old_key_id`.
pub fn reseal_tag(
    keyring: &Keyring,
    old_key_id: &str,
    binding: &ResealBinding<'_>,
) -> Result<String, SealError> {
    Ok(B64.encode(mac(keyring, old_key_id, binding)?.finalize().into_bytes()))
}

/// Whether `tag` is the tag of this binding, compared in constant time. Any failure (a key this
/// keyring lacks, a tag that is not base64) is a mismatch.
pub fn verify_reseal_tag(
    keyring: &Keyring,
    old_key_id: &str,
    binding: &ResealBinding<'_>,
    tag: &str,
) -> bool {
    let Ok(tag) = B64.decode(tag) else {
        return false;
    };
    mac(keyring, old_key_id, binding).is_ok_and(|mac| mac.verify_slice(&tag).is_ok())
}
