//! Autolock, Swarm's model: the keyring is encrypted under a key derived (Argon2id) from an
//! unlock key that is shown once, when the keyring is protected, and never stored. A server
//! whose keyring is autolocked starts locked, and opens it when given the unlock key.
//!
//! The unlock key is 32 random bytes, so the KDF is not what keeps it from being guessed; it
//! is there so that a future weaker key (a passphrase) costs an attacker time, with its
//! parameters stored beside the salt so they can grow.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use zeroize::Zeroizing;

use super::ProtectError;
use crate::seal::wrapped::{random, PayloadKey, ProtectorRecord, PAYLOAD_KEY_LEN};

/// The unlock key's text: a versioned prefix and 32 bytes in unpadded base64url.
const PREFIX: &str = "RSUNLOCK-1-";
const KEY_BYTES: usize = 32;
/// OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane): about 50 ms on this project's VM.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
const SALT_LEN: usize = 16;
/// Bounds on parameters read from a stored keyring, so an edited one cannot make the server
/// allocate without limit.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 16;
const MAX_PARALLELISM: u32 = 8;

/// An unlock key; its Debug output is redacted and it is wiped when dropped.
#[derive(Clone)]
pub struct UnlockKey(Zeroizing<[u8; KEY_BYTES]>);

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(redacted)")
    }
}

impl std::str::FromStr for UnlockKey {
    type Err = ProtectError;

    /// Reads an unlock key as it was printed, surrounding whitespace ignored.
    fn from_str(text: &str) -> Result<Self, ProtectError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(ProtectError::MalformedUnlockKey)?;
        let decoded = Zeroizing::new(
            B64URL
                .decode(body)
                .map_err(|_| ProtectError::MalformedUnlockKey)?,
        );
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        if decoded.len() != KEY_BYTES {
            return Err(ProtectError::MalformedUnlockKey);
        }
        key.copy_from_slice(&decoded);
        Ok(UnlockKey(key))
    }
}

impl UnlockKey {
    /// A new random unlock key.
    pub fn generate() -> Result<Self, ProtectError> {
        Ok(UnlockKey(random::<KEY_BYTES>()?))
    }

    /// The text to show the operator, once.
    pub fn reveal(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{PREFIX}{}", B64URL.encode(self.0.as_slice())))
    }

    /// A fresh salt and the payload key derived with it, for a new wrapped keyring.
    pub(super) fn new_payload_key(&self) -> Result<(ProtectorRecord, PayloadKey), ProtectError> {
        let record = ProtectorRecord::Autolock {
            kdf: "argon2id".into(),
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
            salt: random::<SALT_LEN>()?.to_vec(),
        };
        let key = self.derive(&record, "")?;
        Ok((record, key))
    }

    /// The payload key of a stored keyring.
    pub(super) fn payload_key(
        &self,
        keyring_id: &str,
        record: &ProtectorRecord,
    ) -> Result<PayloadKey, ProtectError> {
        self.derive(record, keyring_id)
    }

    fn derive(
        &self,
        record: &ProtectorRecord,
        keyring_id: &str,
    ) -> Result<PayloadKey, ProtectError> {
        let ProtectorRecord::Autolock {
            kdf,
            memory_kib,
            iterations,
            parallelism,
            salt,
        } = record
        else {
            return Err(ProtectError::NotAutolock {
                keyring: keyring_id.to_string(),
            });
        };
        let out_of_range = || ProtectError::KdfParameters(keyring_id.to_string());
        if kdf != "argon2id"
            || *memory_kib > MAX_MEMORY_KIB
            || !(1..=MAX_ITERATIONS).contains(iterations)
            || !(1..=MAX_PARALLELISM).contains(parallelism)
            || salt.len() < 8
        {
            return Err(out_of_range());
        }
        let params = argon2::Params::new(
            *memory_kib,
            *iterations,
            *parallelism,
            Some(PAYLOAD_KEY_LEN),
        )
        .map_err(|_| out_of_range())?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; PAYLOAD_KEY_LEN]);
        argon
            .hash_password_into(self.0.as_slice(), salt, key.as_mut())
            .map_err(ProtectError::Kdf)?;
        Ok(key)
    }
}
