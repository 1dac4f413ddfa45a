//! `runsecrets keys protect|ls|rotate|retire` and `runsecrets unlock`: where the keyring is,
//! what opens it, what each verb prints, and the check that keeps a key that still opens a
//! stored secret.

use std::future::Future;

use zeroize::Zeroizing;

use super::args::{KeysCommand, KeysVerb, OpenArgs, UnlockArgs};
use super::command::{runtime, CommandError};
use crate::config::StoreLocation;
use crate::seal::protector::{Protector, UnlockKey};
use crate::seal::PublicKeys;
use crate::store::keyring::{run_file, KeyringPlace};
use crate::store::kubernetes::{publish_public_keys, KubeStore};
use crate::store::rotation::Opener;
use crate::store::{FileStore, Store, StoreError};

/// `NAMESPACE/NAME` of a `--keyring` or `--public-keys` flag.
fn namespaced<'a>(flag: &str, value: &'a str) -> Result<(&'a str, &'a str), CommandError> {
    value
        .split_once('/')
        .ok_or_else(|| CommandError::Usage(format!("{flag} {value:?} is not NAMESPACE/NAME")))
}

/// Where `keys` works: the keyring file of a data directory, or the keyring Secret with the
/// client (and its runtime) that reaches it.
struct Keyring {
    place: KeyringPlace,
    kube: Option<KubeStore>,
}

impl Keyring {
    fn of(args: &KeysCommand) -> Result<Self, CommandError> {
        match &args.store {
            StoreLocation::File(dir) => Ok(Self {
                place: KeyringPlace::File(dir.clone()),
                kube: None,
            }),
            StoreLocation::Kubernetes => {
                let (namespace, name) = namespaced("--keyring", &args.keyring)?;
                let store = KubeStore::connect()?;
                let place = KeyringPlace::Secret {
                    client: store.client().clone(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                };
                Ok(Self {
                    place,
                    kube: Some(store),
                })
            }
            StoreLocation::None => Err(StoreError::NoStore.into()),
        }
    }

    /// Runs a keyring operation on the client's runtime, or on the file store directly.
    fn run<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match &self.kube {
            Some(store) => store.block_on(operation),
            None => run_file(&self.place, operation),
        }
    }

    /// With the Kubernetes store, publishes the public keys in the `--public-keys` ConfigMap.
    fn publish(&self, configmap: &str, public: &PublicKeys) -> Result<(), CommandError> {
        if let Some(store) = &self.kube {
            let (namespace, name) = namespaced("--public-keys", configmap)?;
            store.block_on(publish_public_keys(store.client(), namespace, name, public))?;
        }
        Ok(())
    }
}

/// `runsecrets keys VERB`.
pub fn keys(args: KeysCommand) -> Result<String, CommandError> {
    let ring = Keyring::of(&args)?;
    let opener = |open: &OpenArgs| {
        let env = std::env::var("RUNSECRETS_UNLOCK_KEY")
            .ok()
            .map(Zeroizing::new);
        protector_from(open, env).map_err(CommandError::Opener)
    };
    match args.verb {
        KeysVerb::Protect(protect) => {
            let protector = if protect.autolock {
                Protector::Autolock(UnlockKey::generate()?)
            } else {
                let config = protect
                    .token
                    .config(protect.pkcs11_generate_key)
                    .map_err(CommandError::Pkcs11)?
                    .ok_or(CommandError::NoPkcs11Module)?;
                Protector::Pkcs11(config)
            };
            let protected = ring.run(ring.place.protect(&protector))?;
            Ok(super::protected_report(
                &ring.place.describe(),
                &protected,
                &protector,
            ))
        }
        KeysVerb::Ls => {
            let public = match &ring.kube {
                Some(store) => store.public_keys(&args.public_keys)?,
                None => ring.run(ring.place.public_keys())?,
            };
            Ok(ls_table(&public))
        }
        KeysVerb::Rotate { kem, open } => {
            let protector = opener(&open)?;
            let opener = protector.as_ref().map_or(Opener::Plain, Opener::Protector);
            let changed = ring.run(ring.place.rotate(&opener, std::time::Duration::ZERO, kem))?;
            let public = changed.ring.public_keys()?;
            ring.publish(&args.public_keys, &public)?;
            let newest = public.newest()?;
            Ok(format!(
                "{}\nnew secrets are sealed with key {} ({}); the {} older key(s) keep opening what they sealed\n",
                newest.id,
                newest.id,
                newest.suite,
                public.keys.len() - 1
            ))
        }
        KeysVerb::Retire { key_id, open } => {
            match (&ring.kube, &args.store) {
                (Some(store), _) => check_retirable(store, &key_id)?,
                (None, StoreLocation::File(dir)) => {
                    check_retirable(&FileStore::open(dir)?, &key_id)?
                }
                (None, _) => return Err(StoreError::NoStore.into()),
            }
            let protector = opener(&open)?;
            let opener = protector.as_ref().map_or(Opener::Plain, Opener::Protector);
            let changed = ring.run(ring.place.retire(&opener, &key_id))?;
            ring.publish(&args.public_keys, &changed.ring.public_keys()?)?;
            Ok(format!("{key_id}\n"))
        }
    }
}

/// `runsecrets unlock`: the key from --unlock-key-file, RUNSECRETS_UNLOCK_KEY or standard
/// input, sent to the server over TLS.
pub fn unlock(args: &UnlockArgs) -> Result<String, CommandError> {
    let text = match (
        &args.unlock_key_file,
        std::env::var("RUNSECRETS_UNLOCK_KEY"),
    ) {
        (Some(file), _) => read_unlock_key(file)?,
        (None, Ok(key)) => Zeroizing::new(key),
        (None, Err(_)) => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .map_err(CommandError::UnlockKeyStdin)?;
            line
        }
    };
    let key: UnlockKey = text.parse()?;
    let answer =
        runtime()?.block_on(crate::delivery::unlock::send(&args.server, &args.ca, &key))?;
    Ok(format!("{answer}\n"))
}

/// `keys ls`: one line per key, oldest first; the newest seals.
pub fn ls_table(keys: &PublicKeys) -> String {
    let mut out = format!("{:<18}{:<11}{:<32}SEALS\n", "ID", "ALGORITHM", "CREATED");
    let last = keys.keys.len().saturating_sub(1);
    for (i, key) in keys.keys.iter().enumerate() {
        out.push_str(&format!(
            "{:<18}{:<11}{:<31} {}\n",
            key.id,
            key.suite,
            key.created,
            if i == last { "yes" } else { "" }
        ));
    }
    out
}

/// Refuses to retire `key_id` while any stored secret is sealed with it, naming them.
pub fn check_retirable(store: &dyn Store, key_id: &str) -> Result<(), StoreError> {
    let sealed: Vec<String> = store
        .list(None)?
        .into_iter()
        .filter(|r| r.spec.key_id == key_id)
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect();
    if sealed.is_empty() {
        Ok(())
    } else {
        Err(StoreError::KeyInUse {
            key: key_id.to_string(),
            secrets: sealed,
        })
    }
}

/// `--unlock-key-file`, wiped when dropped; an error names the file.
fn read_unlock_key(file: &std::path::Path) -> Result<Zeroizing<String>, CommandError> {
    std::fs::read_to_string(file)
        .map(Zeroizing::new)
        .map_err(|source| CommandError::File {
            step: "reading the unlock key file",
            path: file.display().to_string(),
            source,
        })
}

/// The protector the CLI's flags name for opening a wrapped keyring: the token with
/// `--pkcs11-module`, else the unlock key from `--unlock-key-file` or `RUNSECRETS_UNLOCK_KEY`.
pub fn protector_from(
    args: &OpenArgs,
    unlock_key_env: Option<zeroize::Zeroizing<String>>,
) -> Result<Option<Protector>, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(config) = args.token.config(false)? {
        return Ok(Some(Protector::Pkcs11(config)));
    }
    let text = match (&args.unlock_key_file, unlock_key_env) {
        (Some(file), _) => read_unlock_key(file)?,
        (None, Some(text)) => text,
        (None, None) => return Ok(None),
    };
    Ok(Some(Protector::Autolock(text.parse::<UnlockKey>()?)))
}
