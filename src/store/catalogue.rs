//! The catalogue the webhook consults: which secrets exist and which service accounts each is
//! granted to, answered from memory so the review path does no network I/O. The server
//! refreshes it periodically; a miss is checked against the store itself (one small file read
//! for the file store), so a secret created a moment ago is found.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{FileStore, SecretRecord, Store, StoreError};

/// The service accounts a secret is granted to (`secret create --service-account`); none
/// listed means every service account of the secret's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Arc<[String]>);

impl Grants {
    pub fn new(service_accounts: &[String]) -> Self {
        Self(service_accounts.into())
    }

    /// Whether a pod running as `service_account` may have the secret.
    pub fn admits(&self, service_account: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|a| a == service_account)
    }

    /// Why a pod running as `service_account` may not have `secret`: the one message the
    /// webhook refuses the pod with and the node plugin's delivery refuses the mount with.
    pub fn refusal(&self, secret: &str, service_account: &str) -> String {
        format!(
            "secret '{secret}' is only for service accounts {}; the pod runs as {service_account}",
            self.0.join(", ")
        )
    }
}

/// What the catalogue knows about one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present(Grants),
    Absent,
    /// The store could not be read.
    Unknown,
}

/// Answers "does secret `namespace/name` exist?" without blocking on a network.
pub trait Catalogue: Send + Sync {
    fn presence(&self, namespace: &str, name: &str) -> Presence;

    /// False while the catalogue is still loading; `/readyz` waits for it, so a replica takes
    /// no reviews before it can answer them.
    fn ready(&self) -> bool {
        true
    }
}

/// The catalogue of the embedded file store.
pub struct FileCatalogue {
    store: FileStore,
    known: ArcSwap<HashMap<String, Grants>>,
    readable: AtomicBool,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl FileCatalogue {
    /// A catalogue over `store`, filled once before it is used.
    pub fn new(store: FileStore) -> Arc<Self> {
        let catalogue = Arc::new(Self {
            store,
            known: ArcSwap::from_pointee(HashMap::new()),
            readable: AtomicBool::new(false),
        });
        let _ = catalogue.refresh();
        catalogue
    }

    /// Rereads the store's names; true when the set changed.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        match self.store.list(None) {
            Ok(records) => {
                let names: HashMap<String, Grants> = records
                    .iter()
                    .map(|r| (key(&r.namespace, &r.name), grants_of(r)))
                    .collect();
                let changed = **self.known.load() != names;
                self.known.store(Arc::new(names));
                self.readable.store(true, Ordering::Relaxed);
                Ok(changed)
            }
            Err(e) => {
                self.readable.store(false, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// A record's grants.
pub fn grants_of(record: &SecretRecord) -> Grants {
    Grants::new(&record.spec.service_accounts)
}

impl Catalogue for FileCatalogue {
    fn presence(&self, namespace: &str, name: &str) -> Presence {
        if let Some(grants) = self.known.load().get(&key(namespace, name)) {
            return Presence::Present(grants.clone());
        }
        match self.store.get(namespace, name) {
            Ok(Some(record)) => Presence::Present(grants_of(&record)),
            Ok(None) if self.readable.load(Ordering::Relaxed) => Presence::Absent,
            _ => Presence::Unknown,
        }
    }
}

/// A fixed set of names granted to every service account, for tests and offline checks.
impl Catalogue for HashSet<String> {
    fn presence(&self, namespace: &str, name: &str) -> Presence {
        if self.contains(&key(namespace, name)) {
            Presence::Present(Grants::default())
        } else {
            Presence::Absent
        }
    }
}
