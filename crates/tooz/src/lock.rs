//! Distributed locks with fencing tokens and a `lost()` signal.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::core::{Acquisition, Core};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{next_nonce, FencingToken, LockMode, LockRequest, LostReason, LostSignal};

/// A named distributed lock, from [`Coordinator::lock`](crate::Coordinator::lock).
///
/// Cheap to clone; clones are the same lock object (as one Python tooz `Lock`): two objects
/// for one name, even from one coordinator, exclude each other.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let coord = tooz::Coordinator::connect("zake://", "worker-1").await?;
/// coord.start().await?;
/// let lock = coord.lock("reindex");
/// let guard = lock.acquire().await?;
/// assert!(coord.lock("reindex").try_acquire().await?.is_none()); // held elsewhere
/// let token = guard.fencing_token();
/// guard.release().await?;
/// let again = lock.acquire().await?;
/// assert!(again.fencing_token() > token);
/// again.release().await?;
/// coord.stop().await?;
/// # Ok::<(), tooz::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Lock {
    shared: Arc<LockShared>,
}

struct LockShared {
    coord: Arc<Core>,
    name: Id,
    held: Mutex<Vec<Arc<Acquisition>>>,
}

enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Lock {
    pub(crate) fn new(coord: Arc<Core>, name: Id) -> Self {
        Lock {
            shared: Arc::new(LockShared {
                coord,
                name,
                held: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The lock name.
    pub fn name(&self) -> &Id {
        &self.shared.name
    }

    /// Waits until the lock is acquired.
    pub async fn acquire(&self) -> Result<LockGuard> {
        let guard = self
            .acquire_with(LockMode::Exclusive, Wait::Forever)
            .await?;
        Ok(guard.expect("waiting forever never gives up"))
    }

    /// Tries once; `None` if the lock is held.
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        self.acquire_with(LockMode::Exclusive, Wait::No).await
    }

    /// Waits at most `timeout`; [`Error::OperationTimedOut`] if the lock is still held then.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        let deadline = Instant::now() + timeout;
        self.acquire_with(LockMode::Exclusive, Wait::Until(deadline))
            .await?
            .ok_or_else(|| {
                Error::OperationTimedOut(format!(
                    "lock {} still held after {timeout:?}",
                    self.name()
                ))
            })
    }

    /// Waits until a shared acquisition is granted (drivers with `shared_locks` support).
    pub async fn acquire_shared(&self) -> Result<LockGuard> {
        let guard = self.acquire_with(LockMode::Shared, Wait::Forever).await?;
        Ok(guard.expect("waiting forever never gives up"))
    }

    /// Tries once to acquire the lock shared; `None` if an exclusive holder has it.
    pub async fn try_acquire_shared(&self) -> Result<Option<LockGuard>> {
        self.acquire_with(LockMode::Shared, Wait::No).await
    }

    async fn acquire_with(&self, mode: LockMode, wait: Wait) -> Result<Option<LockGuard>> {
        let coord = &self.shared.coord;
        coord.check_started()?;
        coord.check_name("lock", &self.shared.name)?;
        let driver = &coord.driver;
        if mode == LockMode::Shared && !driver.support().shared_locks {
            return Err(Error::NotImplemented {
                driver: driver.scheme(),
                operation: "shared locks",
                reason: "the backend's lock has no shared mode",
            });
        }
        let req = LockRequest {
            name: self.shared.name.clone(),
            owner: coord.member.clone(),
            nonce: next_nonce(),
            mode,
            lost: LostSignal::new(),
        };
        let started = Instant::now();
        let single_try = matches!(wait, Wait::No);
        let span = tracing::debug_span!("tooz.lock.acquire", lock = %req.name);
        let token = async {
            match wait {
                Wait::No => driver.lock_try_acquire(&req).await,
                Wait::Until(deadline) => driver.lock_acquire(&req, Some(deadline)).await,
                Wait::Forever => driver.lock_acquire(&req, None).await,
            }
        }
        .instrument(span)
        .await?;
        let Some(token) = token else {
            return Ok(None);
        };
        metrics::histogram!("tooz_lock_wait_seconds").record(started.elapsed().as_secs_f64());
        let now = Instant::now();
        let acq = Arc::new(Acquisition {
            req,
            token,
            acquired_at: now,
            // One try was sent when the call began; a wait's last try, unknown here, just now.
            confirmed_at: std::sync::Mutex::new(if single_try { started } else { now }),
            released: AtomicBool::new(false),
        });
        coord.track(acq.clone());
        self.shared.held.lock().unwrap().push(acq.clone());
        Ok(Some(LockGuard {
            lock: self.clone(),
            acq,
        }))
    }

    /// Releases this object's most recent acquisition (tooz's `release()`); `false` if it
    /// held none or the backend no longer had it.
    pub async fn release(&self) -> Result<bool> {
        let last = self.shared.held.lock().unwrap().pop();
        match last {
            Some(acq) => self.release_acquisition(&acq).await,
            None => Ok(false),
        }
    }

    async fn release_acquisition(&self, acq: &Arc<Acquisition>) -> Result<bool> {
        if acq.released.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        self.shared
            .held
            .lock()
            .unwrap()
            .retain(|a| !Arc::ptr_eq(a, acq));
        let coord = &self.shared.coord;
        coord.untrack(acq);
        metrics::histogram!("tooz_lock_hold_seconds")
            .record(acq.acquired_at.elapsed().as_secs_f64());
        if acq.req.lost.reason().is_some() {
            return Ok(false);
        }
        let release = coord.driver.lock_release(&acq.req);
        coord.call("lock_release", &[], release).await
    }

    /// Frees the lock whoever holds it; `true` if it was held. The holder's `lost()` fires.
    pub async fn break_lock(&self) -> Result<bool> {
        let (coord, name) = (&self.shared.coord, &self.shared.name);
        let driver = &coord.driver;
        coord
            .call("break_lock", &[("lock", name)], driver.lock_break(name))
            .await
    }

    /// True while this object holds at least one acquisition that is not lost.
    pub fn is_held(&self) -> bool {
        self.shared
            .held
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.req.lost.reason().is_none())
    }

    /// The member holding the lock, if any (drivers that record holders).
    pub async fn holder(&self) -> Result<Option<Id>> {
        let (coord, name) = (&self.shared.coord, &self.shared.name);
        let driver = &coord.driver;
        coord
            .call("lock_holder", &[("lock", name)], driver.lock_holder(name))
            .await
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("name", self.name()).finish()
    }
}

/// Proof of one held acquisition. Dropping it releases the lock in the background; call
/// [`LockGuard::release`] to release and learn the outcome.
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    lock: Lock,
    acq: Arc<Acquisition>,
}

impl LockGuard {
    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// The fencing token of this acquisition.
    pub fn fencing_token(&self) -> FencingToken {
        self.acq.token
    }

    /// How long the backend keeps this lock after the last acquisition or refresh it
    /// confirmed, where locks expire unless refreshed (redis, memcached, etcd, consul: the
    /// lock's TTL or the session's lease); `None` where the lock lasts as long as its holder's
    /// process, connection or session (file, ipc, zake, SQL, ZooKeeper).
    ///
    /// With [`LockGuard::confirmed_at`], a bound a supervisor can act on: a process paused
    /// longer than the lease may have lost the lock before it can notice.
    pub fn lease(&self) -> Option<Duration> {
        self.lock.shared.coord.driver.lock_lease(self.lock.name())
    }

    /// When the last acquisition attempt or refresh (by the heartbeat) that the backend
    /// confirmed was sent: where the lock has a [`lease`](LockGuard::lease), the backend keeps
    /// it at least until this instant plus the lease. For a lock got by waiting, the instant
    /// the wait ended, until the first refresh.
    pub fn confirmed_at(&self) -> Instant {
        *self.acq.confirmed_at.lock().unwrap()
    }

    /// Resolves when the lock is lost (broken, expired, session lost). Never resolves while
    /// the lock is safely held.
    pub async fn lost(&self) -> LostReason {
        self.acq.req.lost.wait().await
    }

    /// Why the lock was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.acq.req.lost.reason()
    }

    /// The lost signal of this acquisition, to wait on without borrowing the guard.
    pub fn lost_signal(&self) -> LostSignal {
        self.acq.req.lost.clone()
    }

    /// Releases the lock; `false` if the backend no longer had it (it was lost).
    pub async fn release(self) -> Result<bool> {
        self.lock.release_acquisition(&self.acq).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.acq.is_released() {
            return;
        }
        let lock = self.lock.clone();
        let acq = self.acq.clone();
        self.lock.shared.coord.runtime.spawn(async move {
            if let Err(error) = lock.release_acquisition(&acq).await {
                tracing::warn!(lock = %acq.req.name, %error, "release on drop failed");
            }
        });
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", self.lock.name())
            .field("token", &self.acq.token)
            .field("lost", &self.lost_reason())
            .finish()
    }
}
