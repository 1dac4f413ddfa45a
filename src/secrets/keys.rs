//! Where the CLI finds keys: the keyring in the data directory (created on first use), or a
//! public-key file for sealing elsewhere.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::atomic_file::{self, NewFile};
use crate::seal::{Keyring, PublicKeys};
use crate::store::{io_error, StoreError};

/// Loads `DIR/keyring.json`, or creates it (mode 0600). Creation is a no-clobber publish, so
/// when the CLI and the server start at once both end up with the same keyring.
pub fn load_or_create_keyring(data_dir: &Path) -> Result<Keyring, StoreError> {
    let path = data_dir.join("keyring.json");
    match File::open(&path) {
        Ok(file) => return read_keyring(file, &path),
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(keyring_error("reading", &path)(e))
        }
        Err(_) => {}
    }
    fs::create_dir_all(data_dir).map_err(io_error("creating", data_dir))?;
    let ring = Keyring::generate();
    let json = ring.to_json();
    match atomic_file::create(&path, json.as_bytes(), NewFile::mode(0o600)) {
        Ok(()) => Ok(ring),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let file = File::open(&path).map_err(keyring_error("reading", &path))?;
            read_keyring(file, &path)
        }
        Err(e) => Err(keyring_error("publishing", &path)(e)),
    }
}

/// Reads an opened keyring file after checking, on the open file, that only its owner can
/// read or change it (as ssh checks a private key).
fn read_keyring(mut file: File, path: &Path) -> Result<Keyring, StoreError> {
    let mode = file
        .metadata()
        .map_err(keyring_error("reading", path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyringMode {
            path: path.display().to_string(),
            mode: mode & 0o7777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(keyring_error("reading", path))?;
    Keyring::from_json(&text).map_err(|source| StoreError::Keyring {
        step: "loading",
        place: path.display().to_string(),
        source: Box::new(source),
    })
}

fn keyring_error<'a>(
    step: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Keyring {
        step,
        place: path.display().to_string(),
        source: Box::new(source),
    }
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
    store: &crate::cli::StoreLocation,
    public_keys: &str,
) -> Result<PublicKeys, StoreError> {
    match (key_file, store) {
        (Some(path), _) => public_keys_from_file(path),
        (None, crate::cli::StoreLocation::File(dir)) => {
            Ok(load_or_create_keyring(dir)?.public_keys()?)
        }
        (None, crate::cli::StoreLocation::Kubernetes) => {
            crate::store::kubernetes::KubeStore::connect()?.public_keys(public_keys)
        }
    }
}
