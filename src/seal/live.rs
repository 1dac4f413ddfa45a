//! The server's keyring while it runs: open (private keys in memory) or locked (an autolocked
//! keyring waiting for its unlock key). Readers take a snapshot without a lock; unlocking
//! swaps the open keyring in for everyone at once.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::protector::{ProtectError, Protector, UnlockKey};
use super::wrapped::{PayloadKey, WrappedKeyring};
use super::{Keyring, PublicKeys};

/// The keyring a server serves with.
pub struct LiveKeyring {
    open: ArcSwapOption<Keyring>,
    public: ArcSwap<PublicKeys>,
    /// The stored wrapped form and, once open, its payload key (a rewrap needs it).
    wrapped: Mutex<Option<(WrappedKeyring, Option<PayloadKey>)>>,
    /// The wrapped keyring's id, or `unwrapped`.
    id: String,
}

impl std::fmt::Debug for LiveKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKeyring")
            .field("id", &self.id)
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

impl LiveKeyring {
    /// An open keyring; `wrapping` when it is stored wrapped.
    pub fn open(
        ring: Keyring,
        wrapping: Option<(WrappedKeyring, PayloadKey)>,
    ) -> Result<Self, ProtectError> {
        let public = ring.public_keys()?;
        let id = wrapping
            .as_ref()
            .map_or_else(|| "unwrapped".to_string(), |(w, _)| w.keyring_id.clone());
        Ok(Self {
            open: ArcSwapOption::from_pointee(ring),
            public: ArcSwap::from_pointee(public),
            wrapped: Mutex::new(wrapping.map(|(w, k)| (w, Some(k)))),
            id,
        })
    }

    /// A keyring that waits for its unlock key; its public keys are served meanwhile.
    pub fn locked(wrapped: WrappedKeyring) -> Self {
        Self {
            open: ArcSwapOption::empty(),
            public: ArcSwap::from_pointee(PublicKeys {
                keys: wrapped.keys.clone(),
            }),
            id: wrapped.keyring_id.clone(),
            wrapped: Mutex::new(Some((wrapped, None))),
        }
    }

    /// The open keyring, or `None` while locked.
    pub fn keyring(&self) -> Option<Arc<Keyring>> {
        self.open.load_full()
    }

    pub fn is_locked(&self) -> bool {
        self.open.load().is_none()
    }

    pub fn public_keys(&self) -> Arc<PublicKeys> {
        self.public.load_full()
    }

    /// The wrapped keyring's id (`unwrapped` for a plain one).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The payload key of an open wrapped keyring (to write it back after a change).
    pub fn payload_key(&self) -> Option<PayloadKey> {
        let slot = self.wrapped.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().and_then(|(_, key)| key.clone())
    }

    /// Takes in the keyring as changed in storage (a rotation here or by another replica,
    /// a retirement); public keys and the open keys switch together.
    pub fn replace(
        &self,
        ring: Keyring,
        wrapping: Option<(WrappedKeyring, PayloadKey)>,
    ) -> Result<(), ProtectError> {
        let public = ring.public_keys()?;
        let mut slot = self.wrapped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((wrapped, key)) = wrapping {
            *slot = Some((wrapped, Some(key)));
        }
        self.open.store(Some(Arc::new(ring)));
        self.public.store(Arc::new(public));
        Ok(())
    }

    /// Opens a locked keyring with its unlock key (Argon2id: call it off the async runtime).
    /// Returns false when it was already open; the key is then not checked.
    pub fn unlock(&self, key: &UnlockKey) -> Result<bool, ProtectError> {
        if !self.is_locked() {
            return Ok(false);
        }
        let mut slot = self.wrapped.lock().unwrap_or_else(|e| e.into_inner());
        let Some((wrapped, payload)) = slot.as_mut() else {
            return Ok(false);
        };
        if payload.is_some() {
            return Ok(false);
        }
        let (ring, payload_key) = Protector::Autolock(key.clone()).unwrap(wrapped)?;
        *payload = Some(payload_key);
        self.open.store(Some(Arc::new(ring)));
        Ok(true)
    }
}
