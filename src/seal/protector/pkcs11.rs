//! The PKCS#11 protector: a non-extractable AES-256 key in a token (an HSM, SoftHSM2, or a
//! cloud KMS's PKCS#11 library) encrypts the keyring's random payload key with AES-GCM inside
//! the token. The key-encryption key never leaves the token; the payload key is asked for
//! once per start and kept only in memory.

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::{Zeroize, Zeroizing};

use super::ProtectError;
use crate::seal::wrapped::{random, PayloadKey, ProtectorRecord, WrappedKeyring, PAYLOAD_KEY_LEN};

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// A token PIN; its Debug output is redacted and it is wiped when dropped.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(redacted)")
    }
}

impl std::str::FromStr for Pin {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Pin(Zeroizing::new(s.to_string())))
    }
}

impl Pin {
    /// Reads a PIN file; one trailing newline is not part of the PIN.
    pub fn from_file(path: &Path) -> Result<Self, Pkcs11Error> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            Pkcs11Error::PinFile {
                path: path.display().to_string(),
                source,
            }
        })?);
        let pin = text.strip_suffix('\n').unwrap_or(&text);
        Ok(Pin(Zeroizing::new(
            pin.strip_suffix('\r').unwrap_or(pin).to_string(),
        )))
    }

    fn auth(&self) -> AuthPin {
        let mut copy = String::with_capacity(self.0.len());
        copy.push_str(&self.0);
        AuthPin::new(copy)
    }
}

/// Where the key-encryption key is: module, token label, key label, and the user PIN.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token: String,
    pub key: String,
    pub pin: Pin,
    /// Create the AES key in the token when no key has the label (`keys protect` only).
    pub generate_key: bool,
}

/// A PKCS#11 failure, named by what the operator can change.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error(
        "loading the PKCS#11 module {module}: check --pkcs11-module (Debian's softhsm2 \
         package installs /usr/lib/softhsm/libsofthsm2.so)"
    )]
    Module {
        module: String,
        #[source]
        source: CkError,
    },
    #[error(
        "the PKCS#11 module {module} has no token labelled {token:?} (its tokens: {found}): \
         check --pkcs11-token"
    )]
    NoToken {
        module: String,
        token: String,
        found: String,
    },
    #[error("token {token:?} refused the PIN: check --pkcs11-pin-file or RUNSECRETS_PKCS11_PIN")]
    Pin {
        token: String,
        #[source]
        source: CkError,
    },
    #[error(
        "token {token:?} has locked its user PIN after too many wrong ones: have its security \
         officer reset the PIN"
    )]
    PinLocked { token: String },
    #[error("no PIN for token {token:?}: give --pkcs11-pin-file or RUNSECRETS_PKCS11_PIN")]
    NoPin { token: String },
    #[error("reading the PIN file {path}")]
    PinFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token {token:?} holds no AES key labelled {key:?}: check --pkcs11-key, or create \
         one with `runsecrets keys protect --pkcs11 --pkcs11-generate-key`"
    )]
    NoKey { token: String, key: String },
    #[error(
        "token {token:?} holds {count} AES keys labelled {key:?}: give the key a label of its own"
    )]
    AmbiguousKey {
        token: String,
        key: String,
        count: usize,
    },
    #[error(
        "key {key:?} of token {token:?} does not open the data key of keyring {keyring}: it \
         is another key (another token or cluster), or the keyring was altered"
    )]
    WrongKey {
        token: String,
        key: String,
        keyring: String,
        #[source]
        source: CkError,
    },
    #[error("{step} (token {token:?})")]
    Token {
        step: &'static str,
        token: String,
        #[source]
        source: CkError,
    },
}

/// An open, logged-in session on the configured token, with the module it came from.
struct TokenSession {
    // Declared first: the session closes before the module is finalised.
    session: Session,
    _module: Pkcs11,
}

impl Pkcs11Config {
    fn token_error(&self, step: &'static str) -> impl FnOnce(CkError) -> Pkcs11Error + '_ {
        move |source| Pkcs11Error::Token {
            step,
            token: self.token.clone(),
            source,
        }
    }

    fn open(&self) -> Result<TokenSession, Pkcs11Error> {
        let module_error = |source| Pkcs11Error::Module {
            module: self.module.display().to_string(),
            source,
        };
        let module = Pkcs11::new(&self.module).map_err(module_error)?;
        module
            .initialize(CInitializeArgs::OsThreads)
            .map_err(module_error)?;
        let slots = module
            .get_slots_with_initialized_token()
            .map_err(module_error)?;
        let mut found = Vec::new();
        let mut chosen = None;
        for slot in slots {
            let info = module
                .get_token_info(slot)
                .map_err(self.token_error("reading the token list"))?;
            let label = info.label().trim_end().to_string();
            if label == self.token && chosen.is_none() {
                chosen = Some(slot);
            }
            found.push(format!("{label:?}"));
        }
        let slot = chosen.ok_or_else(|| Pkcs11Error::NoToken {
            module: self.module.display().to_string(),
            token: self.token.clone(),
            found: if found.is_empty() {
                "none".into()
            } else {
                found.join(", ")
            },
        })?;
        let session = module
            .open_rw_session(slot)
            .map_err(self.token_error("opening a session"))?;
        match session.login(UserType::User, Some(&self.pin.auth())) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(Pkcs11Error::PinLocked {
                    token: self.token.clone(),
                })
            }
            Err(
                source @ CkError::Pkcs11(
                    RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid,
                    _,
                ),
            ) => {
                return Err(Pkcs11Error::Pin {
                    token: self.token.clone(),
                    source,
                })
            }
            Err(source) => return Err(self.token_error("logging in")(source)),
        }
        Ok(TokenSession {
            session,
            _module: module,
        })
    }

    /// The AES key labelled `self.key`; created (non-extractable, sensitive, on the token)
    /// when absent and `generate_key` is set.
    fn find_key(&self, session: &Session) -> Result<ObjectHandle, Pkcs11Error> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.key.as_bytes().to_vec()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(self.token_error("looking for the key"))?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] if self.generate_key => {
                let mut spec = template.to_vec();
                spec.extend([
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::ValueLen(32.into()),
                ]);
                spec.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
                let key = session
                    .generate_key(&Mechanism::AesKeyGen, &spec)
                    .map_err(self.token_error("generating the AES key"))?;
                tracing::info!(token = %self.token, key = %self.key, "generated a non-extractable AES-256 key in the token");
                Ok(key)
            }
            [] => Err(Pkcs11Error::NoKey {
                token: self.token.clone(),
                key: self.key.clone(),
            }),
            many => Err(Pkcs11Error::AmbiguousKey {
                token: self.token.clone(),
                key: self.key.clone(),
                count: many.len(),
            }),
        }
    }

    /// A new random payload key and its encryption by the token's key.
    pub(super) fn new_payload_key(
        &self,
        keyring_id: &str,
    ) -> Result<(ProtectorRecord, PayloadKey), ProtectError> {
        let payload_key = random::<PAYLOAD_KEY_LEN>()?;
        let token = self.open()?;
        let key = self.find_key(&token.session)?;
        let mut iv = *random::<IV_LEN>()?;
        let aad = WrappedKeyring::key_aad(keyring_id);
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
            .map_err(self.token_error("encrypting"))?;
        let sealed = token
            .session
            .encrypt(&Mechanism::AesGcm(params), key, payload_key.as_slice())
            .map_err(self.token_error("encrypting the keyring's data key in the token"))?;
        let mut wrapped_key = iv.to_vec();
        wrapped_key.extend_from_slice(&sealed);
        Ok((
            ProtectorRecord::Pkcs11 {
                token: self.token.clone(),
                key: self.key.clone(),
                wrapped_key,
            },
            payload_key,
        ))
    }

    /// Has the token decrypt a stored payload key.
    pub(super) fn open_payload_key(
        &self,
        keyring_id: &str,
        _stored_token: &str,
        wrapped_key: &[u8],
    ) -> Result<PayloadKey, ProtectError> {
        let token = self.open()?;
        let key = self.find_key(&token.session)?;
        let wrong = |source| Pkcs11Error::WrongKey {
            token: self.token.clone(),
            key: self.key.clone(),
            keyring: keyring_id.to_string(),
            source,
        };
        let (iv, sealed) = match wrapped_key.split_at_checked(IV_LEN) {
            Some((iv, sealed)) if !sealed.is_empty() => (iv, sealed),
            _ => return Err(ProtectError::Tampered(keyring_id.to_string())),
        };
        let mut iv = iv.to_vec();
        let aad = WrappedKeyring::key_aad(keyring_id);
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(wrong)?;
        let mut opened = token
            .session
            .decrypt(&Mechanism::AesGcm(params), key, sealed)
            .map_err(wrong)?;
        let mut payload_key = Zeroizing::new([0u8; PAYLOAD_KEY_LEN]);
        let fits = opened.len() == PAYLOAD_KEY_LEN;
        if fits {
            payload_key.copy_from_slice(&opened);
        }
        opened.zeroize();
        if !fits {
            return Err(ProtectError::Tampered(keyring_id.to_string()));
        }
        Ok(payload_key)
    }
}
