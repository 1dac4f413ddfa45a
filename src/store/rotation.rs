//! Changing a stored keyring in place: rotation (a new sealing key), retirement (removing a
//! key nothing is sealed with), and following a change another writer made. Every change is
//! read, apply, write back at the version read: with several replicas the keyring Secret's
//! resourceVersion is the lock, so two replicas renewing at once produce one new key (the
//! loser's update is refused, it reads the winner's keyring, finds a fresh key and stops).

use std::time::Duration;

use super::keyring::KeyringPlace;
use super::StoreError;
use crate::seal::protector::{missing_protector, ProtectError, Protector};
use crate::seal::wrapped::{PayloadKey, StoredKeyring, WrappedKeyring};
use crate::seal::{Keyring, Suite};

/// Whether a key created at `created` is at least `period` old; a creation time that does not
/// parse counts as old, so a keyring with one is renewed rather than never.
pub fn older_than(created: Option<time::OffsetDateTime>, period: Duration) -> bool {
    created.is_none_or(|created| {
        let age = time::OffsetDateTime::now_utc() - created;
        age >= time::Duration::try_from(period).unwrap_or(time::Duration::MAX)
    })
}

/// How many times a change is retried after losing a race.
const ATTEMPTS: usize = 5;

/// What opens the stored keyring for a change.
pub enum Opener<'a> {
    /// A plain keyring only.
    Plain,
    /// The payload key a running server holds (a wrapped keyring of the same id).
    PayloadKey(&'a PayloadKey),
    /// The protector itself (the CLI: a token, or the unlock key).
    Protector(&'a Protector),
}

/// The keyring as stored after a change (or as found, when nothing was to change).
pub struct Changed {
    pub ring: Keyring,
    pub wrapping: Option<(WrappedKeyring, PayloadKey)>,
    /// Whether this call wrote it.
    pub written: bool,
}

/// Opens a stored keyring with `opener`; returns the keys and, when wrapped, the payload key
/// to write it back with.
fn open(
    place: &KeyringPlace,
    stored: StoredKeyring,
    opener: &Opener<'_>,
) -> Result<(Keyring, Option<(WrappedKeyring, PayloadKey)>), StoreError> {
    match (stored, opener) {
        (StoredKeyring::Plain(ring), _) => Ok((ring, None)),
        (StoredKeyring::Wrapped(wrapped), Opener::PayloadKey(key)) => {
            let ring = wrapped.open(key).map_err(place.error("opening"))?;
            Ok((ring, Some((wrapped, (*key).clone()))))
        }
        (StoredKeyring::Wrapped(wrapped), Opener::Protector(protector)) => {
            let (ring, key) = protector
                .unwrap(&wrapped)
                .map_err(place.error("unwrapping"))?;
            Ok((ring, Some((wrapped, key))))
        }
        (StoredKeyring::Wrapped(wrapped), Opener::Plain) => {
            Err(place.error("opening")(missing_protector(&wrapped)))
        }
    }
}

impl KeyringPlace {
    /// Reads the keyring, lets `change` edit it (returning whether it did), and writes it
    /// back wrapped as it was, at the version read; a lost race is retried on the winner's
    /// keyring, so `change` must decide from what it is given.
    pub async fn change<F>(&self, opener: &Opener<'_>, mut change: F) -> Result<Changed, StoreError>
    where
        F: FnMut(&mut Keyring) -> Result<bool, ProtectError>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.read().await?.ok_or_else(|| {
                self.error("reading")(ProtectError::Seal(crate::seal::SealError::NoKey))
            })?;
            let (mut ring, wrapping) = open(self, self.parse(&stored)?, opener)?;
            if !change(&mut ring).map_err(self.error("changing"))? {
                return Ok(Changed {
                    ring,
                    wrapping,
                    written: false,
                });
            }
            let wrapping = match wrapping {
                None => None,
                Some((old, key)) => {
                    let wrapped =
                        WrappedKeyring::seal(&ring, &old.keyring_id, old.protector.clone(), &key)
                            .map_err(self.error("wrapping"))?;
                    Some((wrapped, key))
                }
            };
            let text = super::keyring::stored_text(&ring, wrapping.as_ref().map(|(w, _)| w))
                .map_err(self.error("changing"))?;
            match self.replace(&text, stored.version.as_deref()).await {
                Ok(()) => {
                    return Ok(Changed {
                        ring,
                        wrapping,
                        written: true,
                    })
                }
                Err(StoreError::KeyringChanged { .. }) if attempt < ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Adds a sealing key when the newest one is older than `period` (or has no readable
    /// creation time); with `period` zero, always. The new key is of `suite`, or without one
    /// of the newest key's suite: a renewal never moves a keyring back to X25519.
    pub async fn rotate(
        &self,
        opener: &Opener<'_>,
        period: Duration,
        suite: Option<Suite>,
    ) -> Result<Changed, StoreError> {
        self.change(opener, |ring| {
            let due = period.is_zero() || older_than(ring.newest_created(), period);
            if due {
                let suite = suite.or(ring.newest_suite()).unwrap_or_default();
                ring.add_key(suite);
            }
            Ok(due)
        })
        .await
    }

    /// Removes `key_id` (never the sealing key).
    pub async fn retire(&self, opener: &Opener<'_>, key_id: &str) -> Result<Changed, StoreError> {
        self.change(opener, |ring| {
            ring.remove_key(key_id)?;
            Ok(true)
        })
        .await
    }
}
