//! Automatic key renewal (`--key-renew-period`, sealed-secrets' 30 days by default) and
//! following keyring changes made elsewhere (another replica's renewal, `keys rotate`,
//! `keys retire`). A changed keyring is taken in at once: the open keys, `GET /v1/keys`, and
//! with the Kubernetes store the public-key ConfigMap.
//!
//! A check runs every few seconds, so it decides from the stored key list (ids, creation
//! times, suites) alone; the private keys are opened (unwrapped, and for X-Wing expanded) only
//! when a renewal is due or the list changed. The file store's reads and writes are
//! synchronous, so they run on the blocking pool, never on the runtime's workers.

use std::sync::Arc;
use std::time::Duration;

use crate::seal::wrapped::{ListedKey, PayloadKey};
use crate::seal::{LiveKeyring, PublicKeys};
use crate::store::keyring::{run_file, KeyringPlace};
use crate::store::rotation::{older_than, Changed, Opener};
use crate::store::StoreError;

/// Where the public keys are published besides `GET /v1/keys`.
pub struct Publisher {
    pub client: kube::Client,
    pub namespace: String,
    pub configmap: String,
}

/// How often the stored keyring is read: often enough to follow another replica within
/// seconds, and to renew within a fraction of a short period.
pub fn check_interval(period: Duration) -> Duration {
    let ten = Duration::from_secs(10);
    if period.is_zero() {
        return ten;
    }
    (period / 2).clamp(Duration::from_secs(1), ten)
}

/// What one check did.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The stored list is the one served and nothing is due: no private key was opened.
    Unchanged,
    /// The keyring was opened: renewed here, or changed elsewhere and taken in.
    Opened { written: bool, changed: bool },
}

fn listing(keys: &PublicKeys) -> Vec<ListedKey> {
    keys.keys.iter().map(ListedKey::of).collect()
}

/// Whether the newest listed key is due for renewal (never with `period` zero: renewal off).
fn due(keys: &[ListedKey], period: Duration) -> bool {
    if period.is_zero() {
        return false;
    }
    let created = keys.last().and_then(|k| {
        time::OffsetDateTime::parse(&k.created, &time::format_description::well_known::Rfc3339).ok()
    });
    older_than(created, period)
}

/// The stored key list, read off the runtime for the file store.
async fn read_listing(place: &KeyringPlace) -> Result<Vec<ListedKey>, StoreError> {
    match place {
        KeyringPlace::File(_) => {
            let place = place.clone();
            blocking(&place.clone(), "reading", move || {
                run_file(&place, place.listing())
            })
            .await
        }
        KeyringPlace::Secret { .. } => place.listing().await,
    }
}

/// Reads and opens the stored keyring, renewing its key when due (the rotation is decided
/// again on what is read, so replicas renewing together make one key).
async fn open_and_renew(
    place: &KeyringPlace,
    key: Option<PayloadKey>,
    period: Duration,
) -> Result<Changed, StoreError> {
    let change = move |place: KeyringPlace| async move {
        let opener = match &key {
            Some(key) => Opener::PayloadKey(key),
            None => Opener::Plain,
        };
        if period.is_zero() {
            place.change(&opener, |_| Ok(false)).await
        } else {
            place.rotate(&opener, period, None).await
        }
    };
    match place {
        KeyringPlace::File(_) => {
            let place = place.clone();
            let step = if period.is_zero() {
                "opening"
            } else {
                "renewing"
            };
            blocking(&place.clone(), step, move || {
                run_file(&place, change(place.clone()))
            })
            .await
        }
        KeyringPlace::Secret { .. } => change(place.clone()).await,
    }
}

/// Runs file-store work off the runtime; a task that died is reported as the `step` it was.
async fn blocking<T: Send + 'static>(
    place: &KeyringPlace,
    step: &'static str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Keyring {
            step,
            place: place.describe(),
            source: Box::new(e),
        })?
}

/// One check: `stored` is the stored key list when it was just read (`None` at start-up,
/// which has just loaded the keyring and serves its keys).
pub async fn check(
    place: &KeyringPlace,
    keyring: &LiveKeyring,
    period: Duration,
    stored: Option<Vec<ListedKey>>,
) -> Result<Checked, StoreError> {
    let served = listing(&keyring.public_keys());
    let stored = stored.unwrap_or_else(|| served.clone());
    if stored == served && !due(&stored, period) {
        return Ok(Checked::Unchanged);
    }
    let changed = open_and_renew(place, keyring.payload_key(), period).await?;
    let public = changed
        .ring
        .public_keys()
        .map_err(|e| place.error("opening")(e.into()))?;
    if changed.written {
        if let Ok(newest) = public.newest() {
            tracing::info!(key = %newest.id, "renewed the sealing key (--key-renew-period)");
        }
    }
    let differs = *keyring.public_keys() != public;
    if differs {
        keyring
            .replace(changed.ring, changed.wrapping)
            .map_err(place.error("taking in"))?;
        tracing::info!(
            keys = public.keys.len(),
            "the keyring changed: serving its keys"
        );
    }
    Ok(Checked::Opened {
        written: changed.written,
        changed: differs,
    })
}

/// Runs until aborted. The first check is at once but decides from the keys start-up loaded
/// (an overdue key is renewed without waiting); later ones read the stored list each period.
pub async fn keep_renewed(
    place: KeyringPlace,
    keyring: Arc<LiveKeyring>,
    period: Duration,
    publisher: Option<Publisher>,
) {
    let every = check_interval(period);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // What the ConfigMap holds as far as this replica knows; a failed publish is retried.
    let mut published = None;
    let mut startup = true;
    loop {
        if !startup {
            tick.tick().await;
        }
        let at_startup = std::mem::replace(&mut startup, false);
        if keyring.is_locked() {
            continue;
        }
        let stored = if at_startup {
            None
        } else {
            match read_listing(&place).await {
                Ok(stored) => Some(stored),
                Err(e) => {
                    warn_once(&mut failing, &e);
                    continue;
                }
            }
        };
        if let Err(e) = check(&place, &keyring, period, stored).await {
            warn_once(&mut failing, &e);
            continue;
        }
        failing = false;
        if let Some(p) = &publisher {
            let public = keyring.public_keys();
            if published.as_ref() == Some(&*public) {
                continue;
            }
            match crate::store::kubernetes::publish_public_keys(
                &p.client,
                &p.namespace,
                &p.configmap,
                &public,
            )
            .await
            {
                Ok(()) => published = Some((*public).clone()),
                Err(e) => {
                    tracing::warn!(error = %crate::error::Chain(&e), "publishing the public keys failed; retrying at the next check")
                }
            }
        }
    }
}

fn warn_once(failing: &mut bool, e: &StoreError) {
    if !*failing {
        tracing::warn!(error = %crate::error::Chain(e), "reading the keyring for renewal failed; serving the keys in memory");
    }
    *failing = true;
}

#[cfg(test)]
mod tests;
