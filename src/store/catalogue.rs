//! The catalogue the webhook consults: which secrets exist, answered from memory so the review
//! path does no network I/O. The server refreshes it periodically; a miss is checked against the
//! store itself (one `stat` for the file store), so a secret created a moment ago is found.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{FileStore, Store, StoreError};

/// What the catalogue knows about one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
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
    known: ArcSwap<HashSet<String>>,
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
            known: ArcSwap::from_pointee(HashSet::new()),
            readable: AtomicBool::new(false),
        });
        let _ = catalogue.refresh();
        catalogue
    }

    /// Rereads the store's names; true when the set changed.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        match self.store.list(None) {
            Ok(records) => {
                let names: HashSet<String> =
                    records.iter().map(|r| key(&r.namespace, &r.name)).collect();
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

impl Catalogue for FileCatalogue {
    fn presence(&self, namespace: &str, name: &str) -> Presence {
        if self.known.load().contains(&key(namespace, name)) {
            return Presence::Present;
        }
        match self.store.exists(namespace, name) {
            Ok(true) => Presence::Present,
            Ok(false) if self.readable.load(Ordering::Relaxed) => Presence::Absent,
            _ => Presence::Unknown,
        }
    }
}

/// A fixed set of names, for tests and offline checks.
impl Catalogue for HashSet<String> {
    fn presence(&self, namespace: &str, name: &str) -> Presence {
        if self.contains(&key(namespace, name)) {
            Presence::Present
        } else {
            Presence::Absent
        }
    }
}
