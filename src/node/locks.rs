//! Per-target locks: publishes and unpublishes of one target path run one at a time, while
//! different targets never wait for each other (no lock is held across targets or the map).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// One async lock per target path, dropped from the map when nobody holds or waits for it.
#[derive(Default)]
pub struct Locks(Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>);

pub struct LockGuard {
    map: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
    key: PathBuf,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Locks {
    pub async fn lock(&self, key: PathBuf) -> LockGuard {
        let entry = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = entry.lock_owned().await;
        LockGuard {
            map: self.0.clone(),
            key,
            guard: Some(guard),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}
