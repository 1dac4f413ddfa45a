//! What wraps the keyring at rest: a PKCS#11 token (the key-encryption key never leaves it)
//! or an unlock key (Swarm's autolock: the key-encryption key is derived with Argon2id from a
//! key shown once). Both end in a payload key held only in memory, which encrypts the private
//! keys (see [`super::wrapped`]).

pub mod autolock;
pub mod pkcs11;

pub use autolock::UnlockKey;
pub use pkcs11::{Pin, Pkcs11Config};

use super::wrapped::{new_keyring_id, PayloadKey, ProtectorRecord, WrappedKeyring};
use super::{Keyring, SealError};

/// Why a keyring could not be wrapped or unwrapped. Each message names the keyring or the
/// setting at fault and what to do; none carries key material, a PIN or an unlock key.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Turning a keyring into the text that is stored failed: nothing is written (an empty
    /// text written instead would replace every key). The cause is the source; it holds no key.
    #[error("serializing the {what}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the keyring's format {0:?} is not one this runsecrets reads (it reads \
         runsecrets.io/wrapped-keyring/v1 and plain keyrings): upgrade runsecrets"
    )]
    UnknownFormat(String),
    #[error(
        "wrapped keyring {0} is damaged or was altered (its authenticated content does not \
         check out); restore it from a backup"
    )]
    Tampered(String),
    #[error(
        "the unlock key does not open keyring {0}: it is another keyring's unlock key, or the \
         keyring was altered"
    )]
    WrongUnlockKey(String),
    #[error(
        "not an unlock key: runsecrets unlock keys look like RSUNLOCK-1-<43 characters>, as \
         `runsecrets keys protect --autolock` printed it"
    )]
    MalformedUnlockKey,
    #[error(
        "keyring {0} is locked (autolock): it opens with its unlock key (a server: \
         `runsecrets unlock` or --unlock-key-file; the CLI: --unlock-key-file or \
         RUNSECRETS_UNLOCK_KEY)"
    )]
    Locked(String),
    #[error(
        "keyring {keyring} is protected by PKCS#11 (token {token:?}, key {key:?}): give \
         --pkcs11-module, --pkcs11-token, --pkcs11-key and --pkcs11-pin-file (or \
         RUNSECRETS_PKCS11_PIN)"
    )]
    NeedsPkcs11 {
        keyring: String,
        token: String,
        key: String,
    },
    #[error(
        "keyring {keyring} is protected by PKCS#11, not by an unlock key: it is opened with \
         the --pkcs11-* settings"
    )]
    NotAutolock { keyring: String },
    #[error("keyring {keyring} is already protected ({kind}); nothing was changed")]
    AlreadyProtected { keyring: String, kind: &'static str },
    #[error(
        "the keyring {place} is stored unwrapped although a PKCS#11 token is configured: \
         protect it with `runsecrets keys protect --pkcs11 ...` (the same --pkcs11-* \
         settings), which replaces the plaintext copy"
    )]
    Unprotected { place: String },
    #[error(transparent)]
    Pkcs11(#[from] pkcs11::Pkcs11Error),
    #[error("the system's random number generator failed")]
    Random,
    #[error("the AEAD failed to encrypt the keyring")]
    Encrypt,
    #[error("deriving the key-encryption key with Argon2id")]
    Kdf(#[source] argon2::Error),
    #[error(
        "wrapped keyring {0} asks for Argon2id parameters out of range (memory up to 1 GiB, \
         up to 16 iterations and 8 lanes); it was altered"
    )]
    KdfParameters(String),
}

/// How a keyring is (to be) protected.
#[derive(Debug, Clone)]
pub enum Protector {
    Pkcs11(Pkcs11Config),
    /// Autolock with a known unlock key (to create, or to open).
    Autolock(UnlockKey),
}

/// A keyring wrapped and ready to store, with the payload key a later rewrap (a rotation)
/// needs, and for autolock the unlock key to show once.
pub struct Wrapping {
    pub wrapped: WrappedKeyring,
    pub payload_key: PayloadKey,
}

impl Protector {
    /// Wraps `ring` as a new protected keyring.
    pub fn wrap(&self, ring: &Keyring) -> Result<Wrapping, ProtectError> {
        let keyring_id = new_keyring_id()?;
        let (record, payload_key) = match self {
            Protector::Pkcs11(config) => config.new_payload_key(&keyring_id)?,
            Protector::Autolock(unlock) => unlock.new_payload_key()?,
        };
        let wrapped = WrappedKeyring::seal(ring, &keyring_id, record, &payload_key)?;
        Ok(Wrapping {
            wrapped,
            payload_key,
        })
    }

    /// Opens a wrapped keyring; a protector of the other kind is an error that says which
    /// settings the keyring needs.
    pub fn unwrap(&self, wrapped: &WrappedKeyring) -> Result<(Keyring, PayloadKey), ProtectError> {
        let payload_key = match (self, &wrapped.protector) {
            (
                Protector::Pkcs11(config),
                ProtectorRecord::Pkcs11 {
                    wrapped_key, token, ..
                },
            ) => config.open_payload_key(&wrapped.keyring_id, token, wrapped_key)?,
            (Protector::Autolock(unlock), record @ ProtectorRecord::Autolock { .. }) => {
                unlock.payload_key(&wrapped.keyring_id, record)?
            }
            (Protector::Autolock(_), ProtectorRecord::Pkcs11 { token, key, .. }) => {
                return Err(ProtectError::NeedsPkcs11 {
                    keyring: wrapped.keyring_id.clone(),
                    token: token.clone(),
                    key: key.clone(),
                })
            }
            (Protector::Pkcs11(_), ProtectorRecord::Autolock { .. }) => {
                return Err(ProtectError::Locked(wrapped.keyring_id.clone()))
            }
        };
        let ring = wrapped.open(&payload_key)?;
        Ok((ring, payload_key))
    }
}

/// What a keyring needs to open, for a message when it cannot be opened here.
pub fn missing_protector(wrapped: &WrappedKeyring) -> ProtectError {
    match &wrapped.protector {
        ProtectorRecord::Pkcs11 { token, key, .. } => ProtectError::NeedsPkcs11 {
            keyring: wrapped.keyring_id.clone(),
            token: token.clone(),
            key: key.clone(),
        },
        ProtectorRecord::Autolock { .. } => ProtectError::Locked(wrapped.keyring_id.clone()),
    }
}

#[cfg(test)]
mod tests;
