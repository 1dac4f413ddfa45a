//! `runsecrets keys ls|rotate|retire`: what they print, and the check that keeps a key that
//! still opens a stored secret.

use crate::seal::protector::{Protector, UnlockKey};
use crate::seal::PublicKeys;
use crate::store::{Store, StoreError};

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

/// The protector the CLI's flags name for opening a wrapped keyring: the token with
/// `--pkcs11-module`, else the unlock key from `--unlock-key-file` or `RUNSECRETS_UNLOCK_KEY`.
pub fn protector_from(
    args: &crate::cli::OpenArgs,
    unlock_key_env: Option<zeroize::Zeroizing<String>>,
) -> Result<Option<Protector>, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(config) = args.token.config(false)? {
        return Ok(Some(Protector::Pkcs11(config)));
    }
    let text = match (&args.unlock_key_file, unlock_key_env) {
        (Some(file), _) => zeroize::Zeroizing::new(std::fs::read_to_string(file)?),
        (None, Some(text)) => text,
        (None, None) => return Ok(None),
    };
    Ok(Some(Protector::Autolock(text.parse::<UnlockKey>()?)))
}
