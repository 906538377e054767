//! The state every handle of one coordinator shares, and the one path every operation takes
//! to its driver (started check, name checks, span, per-operation bound).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::callbacks::Hub;
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::{ConnectionState, FencingToken, LockRequest, LostReason};
use crate::url::DriverUrl;

/// Longest name (group, member or lock) accepted by the core, in bytes. Drivers may accept less.
pub const MAX_NAME_LEN: usize = 64 * 1024;

/// A held acquisition, as the core tracks it.
pub(crate) struct Acquisition {
    pub(crate) req: LockRequest,
    pub(crate) token: FencingToken,
    pub(crate) acquired_at: Instant,
    /// When the last acquisition attempt or refresh that the backend confirmed was sent.
    pub(crate) confirmed_at: Mutex<Instant>,
    pub(crate) released: AtomicBool,
}

impl Acquisition {
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

/// The state one coordinator and all its clones, locks and watches share.
pub(crate) struct Core {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) member: Id,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) url: DriverUrl,
    /// The bound of one call (`operation_timeout`, default the session timeout).
    pub(crate) operation_timeout: Duration,
    /// False when the caller heartbeats by hand (`CoordinatorBuilder::manual_heartbeat`).
    pub(crate) auto_heartbeat: bool,
    pub(crate) started: AtomicBool,
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    pub(crate) state: Arc<watch::Sender<ConnectionState>>,
    pub(crate) joined: Mutex<BTreeSet<Id>>,
    pub(crate) held: Mutex<HashMap<String, Arc<Acquisition>>>,
    pub(crate) background: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) hub: Hub,
}

impl Core {
    pub(crate) fn check_started(&self) -> Result<()> {
        if self.started.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::NotStarted)
        }
    }

    pub(crate) fn check_name(&self, kind: &'static str, name: &Id) -> Result<()> {
        let reason = if name.is_empty() {
            "it is empty".to_string()
        } else if name.len() > MAX_NAME_LEN {
            format!("it is longer than {MAX_NAME_LEN} bytes")
        } else {
            return self.driver.validate_name(kind, name);
        };
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    }

    pub(crate) fn track(&self, acq: Arc<Acquisition>) {
        self.held.lock().unwrap().insert(acq.req.nonce.clone(), acq);
    }

    pub(crate) fn untrack(&self, acq: &Acquisition) {
        self.held.lock().unwrap().remove(&acq.req.nonce);
    }

    pub(crate) fn held(&self) -> Vec<Arc<Acquisition>> {
        self.held.lock().unwrap().values().cloned().collect()
    }

    /// Fires `lost` on every held acquisition and forgets them.
    pub(crate) fn lose_all(&self, reason: LostReason) {
        let all: Vec<_> = self.held.lock().unwrap().drain().map(|(_, a)| a).collect();
        for acq in all {
            acq.req.lost.fire(reason);
        }
    }

    pub(crate) fn abort_background(&self) {
        for task in self.background.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Runs one driver call after the common checks (started, names), in a span, bounded by
    /// the operation timeout.
    pub(crate) async fn call<T>(
        &self,
        op: &'static str,
        names: &[(&'static str, &Id)],
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.check_started()?;
        for (kind, name) in names {
            self.check_name(kind, name)?;
        }
        let bound = self.operation_timeout;
        let span = tracing::debug_span!("tooz.op", op, driver = self.driver.scheme());
        match tokio::time::timeout(bound, fut.instrument(span)).await {
            Ok(result) => {
                if result.is_ok() {
                    count_membership(op);
                }
                result
            }
            Err(_) => Err(Error::OperationTimedOut(format!(
                "{op} took longer than {bound:?}"
            ))),
        }
    }

    pub(crate) fn forget_joined(&self, group: &Id) {
        self.joined.lock().unwrap().remove(group);
    }

    pub(crate) fn check_election(&self) -> Result<()> {
        let driver = &self.driver;
        if driver.support().election {
            return Ok(());
        }
        Err(Error::NotImplemented {
            driver: driver.scheme(),
            operation: "leader election",
            reason: "the backend has no lock that can elect a leader",
        })
    }

    /// Refreshes every held lock; those the backend no longer has are reported lost.
    pub(crate) async fn refresh_locks(&self) {
        for acq in self.held() {
            let sent = Instant::now();
            match self.driver.lock_refresh(&acq.req).await {
                Ok(true) => *acq.confirmed_at.lock().unwrap() = sent,
                Ok(false) => {
                    self.untrack(&acq);
                    acq.req.lost.fire(LostReason::Expired);
                }
                Err(error) => tracing::warn!(lock = %acq.req.name, %error, "lock refresh failed"),
            }
        }
    }
}

/// Counts the membership changes that succeed: `tooz_group_operations_total`, labelled `op`
/// (`create_group`, `delete_group`, `join_group`, `leave_group`).
fn count_membership(op: &'static str) {
    if matches!(
        op,
        "create_group" | "delete_group" | "join_group" | "leave_group"
    ) {
        metrics::counter!("tooz_group_operations_total", "op" => op).increment(1);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.abort_background();
    }
}
