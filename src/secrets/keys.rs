//! Where the CLI finds keys: the keyring in the data directory (created on first use), or a
//! public-key file for sealing elsewhere.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::seal::{Keyring, PublicKeys};
use crate::store::{io_error, StoreError};

/// Loads `DIR/keyring.json`, or creates it (mode 0600). Creation is publish-by-link, so when
/// the CLI and the server start at once both end up with the same keyring.
pub fn load_or_create_keyring(data_dir: &Path) -> Result<Keyring, StoreError> {
    let path = data_dir.join("keyring.json");
    match fs::read_to_string(&path) {
        Ok(text) => return Keyring::from_json(&text).map_err(StoreError::from),
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_error("reading", &path)(e)),
        Err(_) => {}
    }
    fs::create_dir_all(data_dir).map_err(io_error("creating", data_dir))?;
    let ring = Keyring::generate();
    let tmp = data_dir.join(format!(".keyring-{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error("creating", &tmp))?;
    file.write_all(ring.to_json().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error("writing", &tmp))?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(ring),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(&path).map_err(io_error("reading", &path))?;
            Keyring::from_json(&text).map_err(StoreError::from)
        }
        Err(e) => Err(io_error("publishing", &path)(e)),
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
