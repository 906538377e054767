//! Lock primitives shared by the core and the drivers: fencing tokens, requests, lost signals.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use crate::id::Id;

/// A number that strictly increases with every acquisition of one lock name.
///
/// Hand it to the resource the lock protects, which refuses writes carrying a token smaller
/// than the largest it has seen: a holder that lost its lock without knowing (paused, cut
/// off) is then fenced out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Exclusive or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// One holder at a time.
    Exclusive,
    /// Any number of shared holders, excluding exclusive ones.
    Shared,
}

/// Why a held lock (or leadership) stopped being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostReason {
    /// Someone called `break_lock`.
    Broken,
    /// The session ended, or stayed suspended past its timeout.
    SessionLost,
    /// The backend no longer has the lock (it expired or was taken over).
    Expired,
    /// The leader stood down (`stand_down_group_leader`).
    SteppedDown,
    /// The coordinator was stopped.
    CoordinatorStopped,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::Broken => "the lock was broken",
            LostReason::SessionLost => "the session was lost",
            LostReason::Expired => "the lock expired or was taken over",
            LostReason::SteppedDown => "the leader stood down",
            LostReason::CoordinatorStopped => "the coordinator was stopped",
        })
    }
}

/// The signal fired when a held lock is lost. Drivers keep a clone and fire it when the
/// backend tells them (a break, an expiry); the core fires it on session loss.
#[derive(Clone)]
pub struct LostSignal(Arc<watch::Sender<Option<LostReason>>>);

impl LostSignal {
    pub(crate) fn new() -> Self {
        LostSignal(Arc::new(watch::channel(None).0))
    }

    /// Fires the signal; only the first reason is kept. Returns true if this call fired it.
    pub fn fire(&self, reason: LostReason) -> bool {
        let fired = self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
        if fired {
            tracing::warn!(%reason, "lock lost");
            metrics::counter!("tooz_locks_lost_total").increment(1);
        }
        fired
    }

    /// The reason, if fired.
    pub fn reason(&self) -> Option<LostReason> {
        *self.0.borrow()
    }

    /// Resolves with the reason once fired.
    pub async fn wait(&self) -> LostReason {
        let mut rx = self.0.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return LostReason::CoordinatorStopped;
            }
        }
    }
}

impl Default for LostSignal {
    /// A signal not fired yet (for drivers and tests that make their own requests).
    fn default() -> Self {
        LostSignal::new()
    }
}

impl fmt::Debug for LostSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LostSignal({:?})", self.reason())
    }
}

/// One acquisition as a driver sees it.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// The lock name.
    pub name: Id,
    /// The member acquiring it.
    pub owner: Id,
    /// Unique per acquisition (32 lowercase hex digits), so two acquisitions by one member
    /// still exclude each other.
    pub nonce: String,
    /// Exclusive or shared.
    pub mode: LockMode,
    /// Fired when this acquisition is lost.
    pub lost: LostSignal,
}

/// A nonce unique to this acquisition: a random per-process prefix and a counter, as 32
/// lowercase hex digits (the shape of a uuid4 hex, which some backends' layouts use).
pub(crate) fn next_nonce() -> String {
    use std::sync::atomic::AtomicU64;
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{count:016x}")
}
