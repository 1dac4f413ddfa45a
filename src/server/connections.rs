//! The connections of one listener: how many are open, which are idle, and which must go.
//!
//! A connection holds a slot from accept until it closes. A slot is only worth holding while
//! the peer is using it, so each connection has two deadlines: one from accept to the end of
//! its first request's headers (TLS handshake included), one from the end of a request to the
//! start of the next (HTTP/1.1 keep-alive and HTTP/2 alike). When every slot is taken, a new
//! connection evicts the one that has been idle longest, so idle peers can never lock out a
//! working one (nginx does the same with its keep-alive connections). Only when every
//! connection has a request in flight does the listener wait, and `/readyz` says so.
//!
//! Written here rather than taken from a crate: hyper, hyper-util and tower-http offer
//! per-request timeouts, not a shared table of connections to choose a victim from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
// Tokio's clock, so tests can pause time.
use tokio::time::Instant;

/// How a listener's connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From accept to the end of the first request's headers, TLS handshake included.
    pub first_request: Duration,
    /// From the end of a request to the headers of the next one.
    pub idle: Duration,
}

/// Why the listener closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No complete request headers within the first-request deadline.
    FirstRequestDeadline,
    /// Idle longer than the idle deadline.
    IdleDeadline,
    /// Idle, and a new connection needed its slot.
    Evicted,
    /// Every connection was busy and a new one was waiting: this one's request had been in
    /// flight the longest, past [`SLOW_REQUEST`] (a review takes milliseconds; a body that
    /// trickles in does not).
    SlowRequest,
}

/// When every slot is busy, a request in flight longer than this may lose its connection to a
/// newcomer. Reviews take well under a millisecond and deliveries a token review or two, so
/// only a peer that sends its body slowly (or a very slow network) is this slow.
pub const SLOW_REQUEST: Duration = Duration::from_secs(2);

impl Closed {
    pub fn label(self) -> &'static str {
        match self {
            Closed::FirstRequestDeadline => "first_request_deadline",
            Closed::IdleDeadline => "idle_deadline",
            Closed::Evicted => "evicted",
            Closed::SlowRequest => "slow_request",
        }
    }
}

/// One connection's activity, shared by its task, its requests and the table.
#[derive(Debug)]
pub struct Activity {
    /// Requests in flight (HTTP/2 may have several).
    busy: AtomicUsize,
    /// When the connection last became idle, in milliseconds since the table's epoch.
    idle_since: AtomicU64,
    /// When the connection became busy or last finished a request while staying busy (same
    /// clock); meaningful while busy.
    busy_since: AtomicU64,
    /// Whether a request has been seen: the idle deadline replaces the first-request one.
    served: AtomicBool,
    /// Why the table evicted this connection: 0 not evicted, 1 idle, 2 slow request.
    evicted: AtomicU8,
    /// Wakes the connection's watchdog when the table evicts it.
    wake: Notify,
}

/// Marks one request in flight until dropped.
pub struct InFlight {
    activity: Arc<Activity>,
    table: Arc<Connections>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .idle_since
            .store(self.table.now_ms(), Ordering::Relaxed);
        // The connection's watchdog is not woken: it looks at `idle_since` when its own timer
        // fires. Waking it here cost every request a second poll of its connection task and a
        // timer re-armed (README, Performance).
        if self.activity.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A saturated accept loop may now evict this connection.
            self.table.changed.notify_one();
        } else {
            // An HTTP/2 connection with other requests in flight just finished one: it is
            // making progress. Slow means no request has finished for SLOW_REQUEST, so a busy
            // apiserver connection that always has a review in flight is never taken for a
            // trickling body.
            self.activity
                .busy_since
                .store(self.table.now_ms(), Ordering::Relaxed);
        }
    }
}

/// A connection's place in the table; dropping it frees the slot.
pub struct Slot {
    id: u64,
    pub activity: Arc<Activity>,
    table: Arc<Connections>,
}

impl Slot {
    /// Counts a request as in flight; call when its headers are complete.
    pub fn begin(&self) -> InFlight {
        self.activity.served.store(true, Ordering::Relaxed);
        if self.activity.busy.fetch_add(1, Ordering::AcqRel) == 0 {
            self.activity
                .busy_since
                .store(self.table.now_ms(), Ordering::Relaxed);
        }
        InFlight {
            activity: self.activity.clone(),
            table: self.table.clone(),
        }
    }

    /// The listener's name, for logs and metrics.
    pub fn listener(&self) -> &'static str {
        self.table.name
    }

    /// Resolves when the connection must close, with the reason: a deadline passed while it
    /// was idle, or the table evicted it.
    pub async fn expired(&self, deadlines: Deadlines) -> Closed {
        self.idle_past(true, |served| {
            if served {
                (deadlines.idle, Closed::IdleDeadline)
            } else {
                (deadlines.first_request, Closed::FirstRequestDeadline)
            }
        })
        .await
    }

    /// Resolves once no request has been in flight for `limit`: how long a connection that was
    /// told to close may linger.
    pub async fn idle_for(&self, limit: Duration) {
        self.idle_past(false, |_| (limit, Closed::IdleDeadline))
            .await;
    }

    /// Nothing wakes this when a request ends, so requests cost no timer work: it sleeps until
    /// the deadline of the idle period it last saw, or for one whole `limit` while a request is
    /// in flight, and looks again. An idle period that began later has a later deadline, so it
    /// is never cut short, and it is noticed no later than its own deadline.
    async fn idle_past(
        &self,
        eviction: bool,
        limit: impl Fn(bool) -> (Duration, Closed),
    ) -> Closed {
        let activity = &self.activity;
        loop {
            // Registered before the checks, so an eviction between them is not missed.
            let evicted = activity.wake.notified();
            if eviction {
                match activity.evicted.load(Ordering::Acquire) {
                    0 => {}
                    1 => return Closed::Evicted,
                    _ => return Closed::SlowRequest,
                }
            }
            let (limit, reason) = limit(activity.served.load(Ordering::Relaxed));
            let due = if activity.busy.load(Ordering::Acquire) > 0 {
                Instant::now() + limit
            } else {
                let since = activity.idle_since.load(Ordering::Relaxed);
                let due = self.table.instant(since) + limit;
                if Instant::now() >= due {
                    return reason;
                }
                due
            };
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = evicted => {}
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Connections {
    /// Listener name for messages and metrics (`webhook`, `delivery`, `admin`).
    pub name: &'static str,
    capacity: usize,
    epoch: Instant,
    open: Mutex<Open>,
    /// Signalled when a slot frees or a connection becomes idle.
    changed: Notify,
    /// Set while a new connection waits because every slot has a request in flight.
    saturated: AtomicBool,
    /// The open-connections metric.
    gauge: Gauge,
}

#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    by_id: HashMap<u64, Arc<Activity>>,
}

impl Connections {
    pub fn new(name: &'static str, capacity: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            name,
            capacity: capacity.max(1),
            epoch: Instant::now(),
            open: Mutex::new(Open::default()),
            changed: Notify::new(),
            saturated: AtomicBool::new(false),
            gauge,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The table holds no invariant a panicking holder could break half-way.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a connection is waiting because every slot has a request in flight.
    pub fn saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    fn remove(&self, id: u64) {
        if self.lock().by_id.remove(&id).is_some() {
            self.gauge.dec();
            self.changed.notify_one();
        }
    }

    /// Takes a slot for a connection just accepted: a free one, else the slot of the
    /// connection idle the longest, else that of the request in flight the longest past
    /// [`SLOW_REQUEST`] (the evicted connection is told to close). Waits while every
    /// connection has a younger request in flight; `None` after `stop` resolves first.
    pub async fn admit(
        self: &Arc<Self>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<Slot> {
        tokio::pin!(stop);
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = self.changed.notified();
            if let Some(slot) = self.try_admit() {
                self.saturated.store(false, Ordering::Relaxed);
                return Some(slot);
            }
            self.saturated.store(true, Ordering::Relaxed);
            // A busy connection may become slow enough to give way without any change.
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(SLOW_REQUEST / 4) => {}
                () = &mut stop => return None,
            }
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.by_id.len() >= self.capacity {
            let (victim, reason) = self.victim(&open)?;
            if let Some(activity) = open.by_id.remove(&victim) {
                self.gauge.dec();
                let code = if reason == Closed::Evicted { 1 } else { 2 };
                activity.evicted.store(code, Ordering::Release);
                activity.wake.notify_one();
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let now = self.now_ms();
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now),
            busy_since: AtomicU64::new(now),
            served: AtomicBool::new(false),
            evicted: AtomicU8::new(0),
            wake: Notify::new(),
        });
        open.by_id.insert(id, activity.clone());
        self.gauge.inc();
        Some(Slot {
            id,
            activity,
            table: self.clone(),
        })
    }

    /// The connection to close for a newcomer: idle the longest, else slow the longest.
    fn victim(&self, open: &Open) -> Option<(u64, Closed)> {
        let idle = open
            .by_id
            .iter()
            .filter(|(_, a)| a.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, a)| a.idle_since.load(Ordering::Relaxed));
        if let Some((id, _)) = idle {
            return Some((*id, Closed::Evicted));
        }
        let slow_before = self
            .now_ms()
            .checked_sub(u64::try_from(SLOW_REQUEST.as_millis()).unwrap_or(u64::MAX))?;
        open.by_id
            .iter()
            .map(|(id, a)| (*id, a.busy_since.load(Ordering::Relaxed)))
            .filter(|(_, since)| *since <= slow_before)
            .min_by_key(|(_, since)| *since)
            .map(|(id, _)| (id, Closed::SlowRequest))
    }

    /// Resolves once every connection has closed.
    pub async fn drained(&self) {
        loop {
            let changed = self.changed.notified();
            if self.is_empty() {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn table(capacity: usize) -> Arc<Connections> {
        Connections::new("webhook", capacity, Gauge::default())
    }

    async fn admit(table: &Arc<Connections>) -> Slot {
        table.admit(std::future::pending()).await.expect("admitted")
    }

    /// Whether `expired` has resolved after letting the paused clock run to `after`.
    async fn expired_within(slot: &Slot, after: Duration) -> Option<Closed> {
        tokio::time::timeout(after, slot.expired(DEADLINES))
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_first_request_deadline() {
        let table = table(4);
        let slot = admit(&table).await;
        assert_eq!(
            expired_within(&slot, Duration::from_millis(9_900)).await,
            None
        );
        assert_eq!(
            expired_within(&slot, Duration::from_millis(200)).await,
            Some(Closed::FirstRequestDeadline)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_request_the_idle_deadline_counts_from_its_end() {
        let table = table(4);
        let slot = admit(&table).await;
        let request = slot.begin();
        // In flight: no deadline applies, however long it takes (the request timeout does).
        assert_eq!(expired_within(&slot, Duration::from_secs(120)).await, None);
        drop(request);
        assert_eq!(
            expired_within(&slot, Duration::from_millis(59_900)).await,
            None
        );
        assert_eq!(
            expired_within(&slot, Duration::from_millis(200)).await,
            Some(Closed::IdleDeadline)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_watchdog_follows_its_connection_through_many_requests() {
        // As a connection runs it: one `expired` future for the connection's whole life, never
        // woken when a request ends.
        let table = table(4);
        let slot = Arc::new(admit(&table).await);
        let start = Instant::now();
        let watchdog = tokio::spawn({
            let slot = slot.clone();
            async move { (slot.expired(DEADLINES).await, Instant::now()) }
        });
        let after = |secs: u64| tokio::time::sleep_until(start + Duration::from_secs(secs));
        // A request from 5 s to 6 s; the next from 50 s to 100 s, in flight when the first idle
        // period's deadline (66 s) passes.
        after(5).await;
        let request = slot.begin();
        after(6).await;
        drop(request);
        after(50).await;
        let request = slot.begin();
        after(100).await;
        drop(request);
        after(159).await;
        assert!(!watchdog.is_finished(), "closed before 60 s of idleness");
        let (reason, at) = watchdog.await.expect("watchdog");
        assert_eq!(reason, Closed::IdleDeadline);
        assert!(
            at - start <= Duration::from_millis(160_010),
            "closed late: {:?}",
            at - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_evicts_the_connection_idle_longest() {
        let table = table(2);
        let oldest = admit(&table).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let newer = admit(&table).await;
        let third = admit(&table).await;
        assert_eq!(table.len(), 2);
        assert_eq!(
            expired_within(&oldest, Duration::ZERO).await,
            Some(Closed::Evicted)
        );
        assert_eq!(expired_within(&newer, Duration::ZERO).await, None);
        drop((newer, third));
        assert!(table.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_waits_for_a_busy_connection_until_its_request_ends() {
        let table = table(1);
        let slot = admit(&table).await;
        let request = slot.begin();
        let waiting = tokio::spawn({
            let table = table.clone();
            async move { admit(&table).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "admitted past a busy connection");
        assert!(
            table.saturated(),
            "saturation is reported while a connection waits"
        );
        // The request ends: the connection is idle, so it now makes room.
        drop(request);
        waiting.await.expect("admitted");
        assert!(!table.saturated());
        assert_eq!(
            expired_within(&slot, Duration::ZERO).await,
            Some(Closed::Evicted)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_slower_than_the_limit_gives_way_when_every_slot_is_busy() {
        let table = table(2);
        let slow = admit(&table).await;
        let _slow_request = slow.begin();
        tokio::time::advance(Duration::from_millis(500)).await;
        let busy = admit(&table).await;
        let _busy_request = busy.begin();
        let waiting = tokio::spawn({
            let table = table.clone();
            async move { admit(&table).await }
        });
        tokio::time::sleep(SLOW_REQUEST - Duration::from_millis(600)).await;
        assert!(
            !waiting.is_finished(),
            "a request younger than the limit was cut"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(waiting.is_finished(), "the slow request kept its slot");
        assert_eq!(
            expired_within(&slow, Duration::ZERO).await,
            Some(Closed::SlowRequest)
        );
        assert_eq!(expired_within(&busy, Duration::ZERO).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_finishing_requests_while_busy_is_not_slow() {
        // An HTTP/2 connection (the apiserver's) always has a review in flight, but each one
        // finishes quickly: it must never be taken for a trickling body.
        let table = table(2);
        let multiplexed = admit(&table).await;
        let mut current = multiplexed.begin();
        // Busy since after the multiplexed connection: by when their requests began, the
        // multiplexed one would look the slower.
        tokio::time::advance(Duration::from_millis(100)).await;
        let slow = admit(&table).await;
        let _slow_request = slow.begin();
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(500)).await;
            let next = multiplexed.begin();
            drop(std::mem::replace(&mut current, next));
        }
        let waiting = tokio::spawn({
            let table = table.clone();
            async move { admit(&table).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(waiting.is_finished(), "the slow request kept its slot");
        assert_eq!(
            expired_within(&slow, Duration::ZERO).await,
            Some(Closed::SlowRequest)
        );
        assert_eq!(expired_within(&multiplexed, Duration::ZERO).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait_for_a_slot() {
        let table = table(1);
        let slot = admit(&table).await;
        let _request = slot.begin();
        let stopped = table
            .admit(tokio::time::sleep(Duration::from_secs(1)))
            .await;
        assert!(stopped.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_told_to_close_lingers_only_while_a_request_is_in_flight() {
        let table = table(1);
        let slot = admit(&table).await;
        let request = slot.begin();
        let linger = Duration::from_secs(1);
        assert!(
            tokio::time::timeout(Duration::from_secs(30), slot.idle_for(linger))
                .await
                .is_err()
        );
        drop(request);
        assert!(
            tokio::time::timeout(Duration::from_millis(1_100), slot.idle_for(linger))
                .await
                .is_ok()
        );
    }
}
