//! Where the keyring is kept, and the one path that loads, creates and protects it for the
//! CLI and the server alike: `DIR/keyring.json` (mode 0600) for the file store, a Secret in
//! the server's namespace for the Kubernetes store. The stored text is a plain keyring or a
//! wrapped one ([`crate::seal::wrapped`]); what it takes to open it is decided here.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use zeroize::Zeroizing;

use super::{io_error, StoreError};
use crate::atomic_file::{self, NewFile};
use crate::seal::protector::{missing_protector, ProtectError, Protector};
use crate::seal::wrapped::{ListedKey, PayloadKey, ProtectorRecord, StoredKeyring, WrappedKeyring};
use crate::seal::{Keyring, LiveKeyring, PublicKeys};

/// The key of the keyring in its Secret.
pub const KEYRING_KEY: &str = "keyring.json";
const KEYRING_FILE: &str = "keyring.json";

/// Where a keyring lives.
#[derive(Clone)]
pub enum KeyringPlace {
    /// The file store's data directory (`DIR/keyring.json`).
    File(PathBuf),
    /// A Secret, key `keyring.json`.
    Secret {
        client: kube::Client,
        namespace: String,
        name: String,
    },
}

/// The stored text and the version it was read at (a Secret's resourceVersion).
pub(super) struct Stored {
    pub(super) text: Zeroizing<String>,
    pub(super) version: Option<String>,
}

/// What a load found.
pub enum Loaded {
    /// Private keys in memory; `wrapping` when stored wrapped.
    Open {
        ring: Keyring,
        wrapping: Option<(WrappedKeyring, PayloadKey)>,
    },
    /// An autolocked keyring: public keys only until it is unlocked.
    Locked(WrappedKeyring),
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loaded::Open { ring, wrapping } => f
                .debug_struct("Open")
                .field("ring", ring)
                .field("wrapped", &wrapping.as_ref().map(|(w, _)| &w.keyring_id))
                .finish(),
            Loaded::Locked(w) => f.debug_tuple("Locked").field(&w.keyring_id).finish(),
        }
    }
}

impl Loaded {
    /// The public keys, open or locked.
    pub fn public_keys(&self) -> Result<PublicKeys, ProtectError> {
        match self {
            Loaded::Open { ring, .. } => Ok(ring.public_keys()?),
            Loaded::Locked(wrapped) => Ok(PublicKeys {
                keys: wrapped.keys.clone(),
            }),
        }
    }

    /// The server's running keyring.
    pub fn into_live(self) -> Result<LiveKeyring, ProtectError> {
        match self {
            Loaded::Open { ring, wrapping } => LiveKeyring::open(ring, wrapping),
            Loaded::Locked(wrapped) => Ok(LiveKeyring::locked(wrapped)),
        }
    }
}

/// A keyring read, or one just created.
enum Found {
    Existing(StoredKeyring),
    Created(Loaded),
}

/// What `keys protect` did.
pub struct Protected {
    pub keyring_id: String,
    /// The keyring did not exist and was created protected.
    pub created: bool,
}

fn api_error(step: &'static str) -> impl FnOnce(kube::Error) -> StoreError {
    move |e| StoreError::Api {
        step,
        message: crate::delivery::tokenreview::describe_kube_error(&e),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KeyringPlace {
    /// How messages name it: the file's path, or `Secret NS/NAME`.
    pub fn describe(&self) -> String {
        match self {
            KeyringPlace::File(dir) => dir.join(KEYRING_FILE).display().to_string(),
            KeyringPlace::Secret {
                namespace, name, ..
            } => format!("Secret {namespace}/{name}"),
        }
    }

    pub fn error(&self, step: &'static str) -> impl FnOnce(ProtectError) -> StoreError + '_ {
        move |source| StoreError::Keyring {
            step,
            place: self.describe(),
            source: Box::new(source),
        }
    }

    fn io(&self, step: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Keyring {
            step,
            place: self.describe(),
            source: Box::new(source),
        }
    }

    pub(super) async fn read(&self) -> Result<Option<Stored>, StoreError> {
        match self {
            KeyringPlace::File(dir) => {
                let path = dir.join(KEYRING_FILE);
                match File::open(&path) {
                    Ok(file) => read_private_file(file, &path).map(Some),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(self.io("reading")(e)),
                }
            }
            KeyringPlace::Secret {
                client,
                namespace,
                name,
            } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let Some(object) = api
                    .get_opt(name)
                    .await
                    .map_err(api_error("reading the keyring Secret"))?
                else {
                    return Ok(None);
                };
                let not_keyring = |why: String| {
                    self.error("loading")(ProtectError::Seal(crate::seal::SealError::NotAKeyring(
                        why,
                    )))
                };
                let bytes = object
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEYRING_KEY))
                    .ok_or_else(|| not_keyring(format!("it has no {KEYRING_KEY}")))?;
                let text =
                    std::str::from_utf8(&bytes.0).map_err(|_| not_keyring("not UTF-8".into()))?;
                Ok(Some(Stored {
                    text: Zeroizing::new(text.to_string()),
                    version: object.metadata.resource_version.clone(),
                }))
            }
        }
    }

    /// The stored keys' ids, creation times and suites, without opening any private key.
    pub async fn listing(&self) -> Result<Vec<ListedKey>, StoreError> {
        let stored = self.read().await?.ok_or_else(|| {
            self.error("reading")(ProtectError::Seal(crate::seal::SealError::NoKey))
        })?;
        StoredKeyring::listing(&stored.text).map_err(self.error("reading"))
    }

    /// Creates the keyring; false when another writer created one first.
    async fn create(&self, text: &str) -> Result<bool, StoreError> {
        match self {
            KeyringPlace::File(dir) => {
                fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
                let path = dir.join(KEYRING_FILE);
                // A no-clobber create, so the CLI and the server starting at once end up with
                // the same keyring.
                match atomic_file::create(&path, text.as_bytes(), NewFile::mode(0o600)) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(self.io("creating")(e)),
                }
            }
            KeyringPlace::Secret {
                client,
                namespace,
                name,
            } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                match api
                    .create(&PostParams::default(), &secret(namespace, name, text))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %format!("{namespace}/{name}"), "created the keyring");
                        Ok(true)
                    }
                    Err(e) if is_status(&e, 409) => Ok(false),
                    Err(e) => Err(api_error("creating the keyring Secret")(e)),
                }
            }
        }
    }

    /// Replaces the stored keyring in one step: a rename over the file, or an update of the
    /// Secret at the version it was read (a concurrent change makes this fail, not overwrite).
    pub(super) async fn replace(
        &self,
        text: &str,
        version: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            KeyringPlace::File(dir) => {
                let path = dir.join(KEYRING_FILE);
                atomic_file::replace(&path, text.as_bytes(), NewFile::mode(0o600))
                    .map_err(self.io("replacing"))
            }
            KeyringPlace::Secret {
                client,
                namespace,
                name,
            } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let mut object = secret(namespace, name, text);
                object.metadata.resource_version = version.map(str::to_string);
                match api.replace(name, &PostParams::default(), &object).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 409) => Err(StoreError::KeyringChanged {
                        place: self.describe(),
                    }),
                    Err(e) => Err(api_error("updating the keyring Secret")(e)),
                }
            }
        }
    }

    /// Reads the stored keyring, creating a new one when absent: wrapped by `protector` when
    /// given, else plain. When two writers create at once, both end up with the winner's.
    async fn read_or_create(&self, protector: Option<&Protector>) -> Result<Found, StoreError> {
        if let Some(stored) = self.read().await? {
            return Ok(Found::Existing(self.parse(&stored)?));
        }
        let ring = Keyring::generate();
        let wrapping = match protector {
            Some(protector) => Some(protector.wrap(&ring).map_err(self.error("protecting"))?),
            None => None,
        };
        let text = stored_text(&ring, wrapping.as_ref().map(|w| &w.wrapped))
            .map_err(self.error("creating"))?;
        if self.create(&text).await? {
            return Ok(Found::Created(Loaded::Open {
                ring,
                wrapping: wrapping.map(|w| (w.wrapped, w.payload_key)),
            }));
        }
        let winner = self.read().await?.ok_or_else(|| {
            self.io("reading")(std::io::Error::other(
                "it vanished right after it was created",
            ))
        })?;
        Ok(Found::Existing(self.parse(&winner)?))
    }

    pub(super) fn parse(&self, stored: &Stored) -> Result<StoredKeyring, StoreError> {
        StoredKeyring::parse(&stored.text).map_err(self.error("loading"))
    }

    /// The server's load: creates the keyring when absent (wrapped when a PKCS#11 token is
    /// configured), opens a PKCS#11-wrapped one with the token, leaves an autolocked one
    /// locked. A plain keyring while a token is configured is refused: it must be migrated.
    pub async fn load(&self, pkcs11: Option<&Protector>) -> Result<Loaded, StoreError> {
        let stored = match self.read_or_create(pkcs11).await? {
            Found::Created(loaded) => return Ok(loaded),
            Found::Existing(stored) => stored,
        };
        match (stored, pkcs11) {
            (StoredKeyring::Plain(_), Some(_)) => {
                Err(self.error("loading")(ProtectError::Unprotected {
                    place: self.describe(),
                }))
            }
            (StoredKeyring::Plain(ring), None) => Ok(Loaded::Open {
                ring,
                wrapping: None,
            }),
            (StoredKeyring::Wrapped(wrapped), protector) => match (protector, &wrapped.protector) {
                (_, ProtectorRecord::Autolock { .. }) => Ok(Loaded::Locked(wrapped)),
                (Some(protector), ProtectorRecord::Pkcs11 { .. }) => {
                    let (ring, key) = protector
                        .unwrap(&wrapped)
                        .map_err(self.error("unwrapping"))?;
                    Ok(Loaded::Open {
                        ring,
                        wrapping: Some((wrapped, key)),
                    })
                }
                (None, ProtectorRecord::Pkcs11 { .. }) => {
                    Err(self.error("loading")(missing_protector(&wrapped)))
                }
            },
        }
    }

    /// The public keys, for sealing: readable without unwrapping. The keyring is created
    /// (plain) when absent, as the file store does on first use.
    pub async fn public_keys(&self) -> Result<PublicKeys, StoreError> {
        match self.read_or_create(None).await? {
            Found::Existing(stored) => stored.public_keys().map_err(self.error("loading")),
            Found::Created(Loaded::Open { ring, .. }) => ring
                .public_keys()
                .map_err(|e| self.error("loading")(e.into())),
            Found::Created(Loaded::Locked(wrapped)) => Ok(PublicKeys { keys: wrapped.keys }),
        }
    }

    /// `keys protect`: wraps a plain keyring (or creates a protected one) and replaces the
    /// plaintext copy. The wrapped form is written aside first and opened again with the
    /// protector before it replaces the plain one, in one atomic step: a crash at any point
    /// leaves either the plain keyring or the verified wrapped one.
    pub async fn protect(&self, protector: &Protector) -> Result<Protected, StoreError> {
        let Some(stored) = self.read().await? else {
            return match self.read_or_create(Some(protector)).await? {
                Found::Created(Loaded::Open {
                    wrapping: Some((wrapped, _)),
                    ..
                }) => Ok(Protected {
                    keyring_id: wrapped.keyring_id,
                    created: true,
                }),
                // Another writer created a keyring meanwhile.
                _ => Err(StoreError::KeyringChanged {
                    place: self.describe(),
                }),
            };
        };
        let ring = match self.parse(&stored)? {
            StoredKeyring::Plain(ring) => ring,
            StoredKeyring::Wrapped(w) => {
                return Err(self.error("protecting")(ProtectError::AlreadyProtected {
                    keyring: w.keyring_id.clone(),
                    kind: w.protector.kind(),
                }))
            }
        };
        let wrapping = protector.wrap(&ring).map_err(self.error("protecting"))?;
        let text = wrapping
            .wrapped
            .to_json()
            .map_err(self.error("protecting"))?;
        // Verify from the text that will be stored, with the protector itself (the token, or
        // the unlock key through Argon2id again), before the plain copy goes.
        let reread = match StoredKeyring::parse(&text).map_err(self.error("verifying"))? {
            StoredKeyring::Wrapped(w) => w,
            StoredKeyring::Plain(_) => {
                return Err(self.error("verifying")(ProtectError::Tampered(
                    wrapping.wrapped.keyring_id.clone(),
                )))
            }
        };
        let (reopened, _) = protector.unwrap(&reread).map_err(self.error("verifying"))?;
        let same = *reopened.to_json().map_err(self.error("verifying"))?
            == *ring.to_json().map_err(self.error("verifying"))?;
        if !same {
            return Err(self.error("verifying")(ProtectError::Tampered(
                reread.keyring_id.clone(),
            )));
        }
        self.replace(&text, stored.version.as_deref()).await?;
        Ok(Protected {
            keyring_id: reread.keyring_id,
            created: false,
        })
    }
}

/// The text stored for `ring`: its wrapped form when it is kept wrapped, else the plain
/// keyring.
pub(super) fn stored_text(
    ring: &Keyring,
    wrapped: Option<&WrappedKeyring>,
) -> Result<Zeroizing<String>, ProtectError> {
    match wrapped {
        Some(w) => w.to_json().map(Zeroizing::new),
        None => ring.to_json(),
    }
}

/// The keyring Secret as written.
fn secret(namespace: &str, name: &str, text: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some([("app.kubernetes.io/part-of".into(), "runsecrets".into())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [(
                KEYRING_KEY.to_string(),
                ByteString(text.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// Reads an opened keyring file after checking, on the open file, that only its owner can
/// read or change it (as ssh checks a private key).
fn read_private_file(mut file: File, path: &Path) -> Result<Stored, StoreError> {
    let failed = |source: std::io::Error| StoreError::Keyring {
        step: "reading",
        place: path.display().to_string(),
        source: Box::new(source),
    };
    let mode = file.metadata().map_err(failed)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyringMode {
            path: path.display().to_string(),
            mode: mode & 0o7777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(failed)?;
    Ok(Stored {
        text,
        version: None,
    })
}

/// Runs a keyring operation on the file store from synchronous code. The file branch never
/// waits on anything (its I/O is synchronous), so one poll completes it; the Secret branch
/// needs a runtime and is refused here.
pub fn run_file<T>(
    place: &KeyringPlace,
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    use std::task::{Context, Poll, Waker};
    let not_file = || StoreError::Api {
        step: "opening the keyring",
        message: format!("{} needs the Kubernetes client's runtime", place.describe()),
    };
    if !matches!(place, KeyringPlace::File(_)) {
        return Err(not_file());
    }
    let mut operation = std::pin::pin!(operation);
    match operation
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => Err(not_file()),
    }
}
