//! Automatic key renewal (`--key-renew-period`, sealed-secrets' 30 days by default) and
//! following keyring changes made elsewhere (another replica's renewal, `keys rotate`,
//! `keys retire`). A changed keyring is taken in at once: the open keys, `GET /v1/keys`, and
//! with the Kubernetes store the public-key ConfigMap.

use std::sync::Arc;
use std::time::Duration;

use crate::seal::LiveKeyring;
use crate::store::keyring::KeyringPlace;
use crate::store::rotation::Opener;

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

/// Runs until aborted.
pub async fn keep_renewed(
    place: KeyringPlace,
    keyring: Arc<LiveKeyring>,
    period: Duration,
    publisher: Option<Publisher>,
) {
    let mut tick = tokio::time::interval(check_interval(period));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // What the ConfigMap holds as far as this replica knows; a failed publish is retried.
    let mut published = None;
    loop {
        tick.tick().await;
        if keyring.is_locked() {
            continue;
        }
        let key = keyring.payload_key();
        let opener = match &key {
            Some(key) => Opener::PayloadKey(key),
            None => Opener::Plain,
        };
        let result = if period.is_zero() {
            place.change(&opener, |_| Ok(false)).await
        } else {
            place.rotate(&opener, period, None).await
        };
        let changed = match result {
            Ok(changed) => changed,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %crate::error::Chain(&e), "reading the keyring for renewal failed; serving the keys in memory");
                }
                failing = true;
                continue;
            }
        };
        failing = false;
        let public = match changed.ring.public_keys() {
            Ok(public) => public,
            Err(_) => continue,
        };
        if changed.written {
            if let Ok(newest) = public.newest() {
                tracing::info!(key = %newest.id, "renewed the sealing key (--key-renew-period)");
            }
        }
        if *keyring.public_keys() != public {
            if let Err(e) = keyring.replace(changed.ring, changed.wrapping) {
                tracing::warn!(error = %crate::error::Chain(&e), "taking in the changed keyring failed");
                continue;
            }
            tracing::info!(
                keys = public.keys.len(),
                "the keyring changed: serving its keys"
            );
        }
        if let Some(p) = &publisher {
            if published.as_ref() == Some(&public) {
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
                Ok(()) => published = Some(public),
                Err(e) => {
                    tracing::warn!(error = %crate::error::Chain(&e), "publishing the public keys failed; retrying at the next check")
                }
            }
        }
    }
}
