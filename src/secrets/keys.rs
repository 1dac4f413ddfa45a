//! Where the CLI finds keys: the keyring in the data directory (created on first use), or a
//! public-key file for sealing elsewhere.

use std::fs;
use std::path::Path;

use crate::config::StoreLocation;
use crate::seal::protector::missing_protector;
use crate::seal::{Keyring, PublicKeys};
use crate::store::keyring::{run_file, KeyringPlace, Loaded};
use crate::store::{io_error, StoreError};

/// Loads `DIR/keyring.json`, or creates it (mode 0600), with its private keys: for a plain
/// keyring only (a wrapped one is opened by the server with its protector).
pub fn load_or_create_keyring(data_dir: &Path) -> Result<Keyring, StoreError> {
    let place = KeyringPlace::File(data_dir.to_path_buf());
    match run_file(&place, place.load(None))? {
        Loaded::Open { ring, .. } => Ok(ring),
        Loaded::Locked(wrapped) => Err(StoreError::Keyring {
            step: "loading",
            place: place.describe(),
            source: Box::new(missing_protector(&wrapped)),
        }),
    }
}

/// The public keys of `DIR/keyring.json`, plain or wrapped (created plain when absent):
/// sealing never needs the private keys.
pub fn file_public_keys(data_dir: &Path) -> Result<PublicKeys, StoreError> {
    let place = KeyringPlace::File(data_dir.to_path_buf());
    run_file(&place, place.public_keys())
}

/// Reads a public-key file (`{"keys": [...]}`, as `GET /v1/keys` will serve it).
pub fn public_keys_from_file(path: &Path) -> Result<PublicKeys, StoreError> {
    let text = fs::read_to_string(path).map_err(io_error("reading", path))?;
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt {
        path: path.display().to_string(),
    })
}

/// The public keys to seal with, as `seal` and `compose convert` find them: a key file
/// (`--key`), else the keyring of the file store, else the ConfigMap the server publishes
/// (`--store kubernetes`, `--public-keys NAMESPACE/NAME`).
pub fn sealing_keys(
    key_file: Option<&Path>,
    store: &StoreLocation,
    public_keys: &str,
) -> Result<PublicKeys, StoreError> {
    match (key_file, store) {
        (Some(path), _) => public_keys_from_file(path),
        (None, StoreLocation::File(dir)) => file_public_keys(dir),
        (None, StoreLocation::Kubernetes) => {
            crate::store::kubernetes::KubeStore::connect()?.public_keys(public_keys)
        }
        (None, StoreLocation::None) => Err(StoreError::NoStore),
    }
}
