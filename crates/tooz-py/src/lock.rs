//! `Lock`: a tooz-rs lock object with tooz's Python semantics (acquire/release pairs, the
//! most recent acquisition released first), plus its fencing token and lost signal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tooz::{LockGuard, LostReason};

use crate::runtime::{run, wait, Owner};

/// One lock object; acquisitions are kept until released.
#[pyclass(module = "tooz_rs._native", frozen)]
pub struct Lock {
    inner: Option<tooz::Lock>,
    held: Arc<Mutex<Vec<LockGuard>>>,
    owner: Owner,
}

impl Lock {
    pub fn new(inner: tooz::Lock, owner: Owner) -> Self {
        Lock {
            inner: Some(inner),
            held: Arc::default(),
            owner,
        }
    }

    fn get(&self) -> PyResult<&tooz::Lock> {
        self.owner.check()?;
        Ok(self.inner.as_ref().expect("set until dropped"))
    }

    fn newest<T>(&self, f: impl FnOnce(&LockGuard) -> T) -> Option<T> {
        self.held.lock().unwrap().last().map(f)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.owner.is_here() {
            std::mem::forget(self.inner.take());
            std::mem::forget(std::mem::take(&mut *self.held.lock().unwrap()));
        }
    }
}

fn reason(lost: LostReason) -> String {
    lost.to_string()
}

#[pymethods]
impl Lock {
    /// The lock's name.
    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        Ok(PyBytes::new(py, self.get()?.name().as_bytes()).unbind())
    }

    /// Acquires the lock (`shared` for a read lock). `wait`: None waits as long as it
    /// takes, 0 tries once, otherwise at most that many seconds. True if acquired.
    #[pyo3(signature = (shared = false, wait_seconds = None))]
    fn acquire(&self, py: Python<'_>, shared: bool, wait_seconds: Option<f64>) -> PyResult<bool> {
        let lock = self.get()?;
        let limit = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
        let guard = match (wait_seconds, shared) {
            (Some(s), true) if s <= 0.0 => run(py, lock.try_acquire_shared())?,
            (Some(s), false) if s <= 0.0 => run(py, lock.try_acquire())?,
            (Some(s), true) => wait(py, async {
                let within = tokio::time::timeout(limit(s), lock.acquire_shared()).await;
                within.ok().transpose()
            })?,
            (Some(s), false) => wait(py, async {
                match lock.acquire_timeout(limit(s)).await {
                    Ok(guard) => Ok(Some(guard)),
                    Err(tooz::Error::OperationTimedOut(_)) => Ok(None),
                    Err(error) => Err(error),
                }
            })?,
            (None, true) => wait(py, async { lock.acquire_shared().await.map(Some) })?,
            (None, false) => wait(py, async { lock.acquire().await.map(Some) })?,
        };
        let Some(guard) = guard else {
            return Ok(false);
        };
        self.held.lock().unwrap().push(guard);
        Ok(true)
    }

    /// Releases the most recent acquisition; False if none is held or it was lost.
    fn release(&self, py: Python<'_>) -> PyResult<bool> {
        self.owner.check()?;
        let Some(guard) = self.held.lock().unwrap().pop() else {
            return Ok(false);
        };
        run(py, guard.release())
    }

    /// Frees the lock whoever holds it (tooz's `break_`); True if it was held.
    fn break_lock(&self, py: Python<'_>) -> PyResult<bool> {
        let lock = self.get()?;
        run(py, lock.break_lock())
    }

    /// True while an acquisition of this object is held and not lost.
    fn is_held(&self) -> PyResult<bool> {
        Ok(self.get()?.is_held())
    }

    /// The member holding the lock, where the backend records it.
    fn holder(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let lock = self.get()?;
        let holder = run(py, lock.holder())?;
        Ok(holder.map(|id| PyBytes::new(py, id.as_bytes()).unbind()))
    }

    /// The fencing token of the most recent acquisition held, if any.
    fn fencing_token(&self) -> PyResult<Option<u64>> {
        self.owner.check()?;
        Ok(self.newest(|g| g.fencing_token().0))
    }

    /// Why the most recent acquisition was lost, or None while it is held (or none is).
    fn lost_reason(&self) -> PyResult<Option<String>> {
        self.owner.check()?;
        Ok(self.newest(|g| g.lost_reason().map(reason)).flatten())
    }

    /// Waits up to `timeout` seconds for the most recent acquisition to be lost; the
    /// reason if it was, None if it is still held (or none is).
    fn wait_lost(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<String>> {
        self.owner.check()?;
        let limit = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let held = self.held.clone();
        let fut = async move {
            let signal = {
                let held = held.lock().unwrap();
                held.last().map(|g| g.lost_signal())
            };
            let Some(signal) = signal else {
                return Ok(None);
            };
            Ok(tokio::time::timeout(limit, signal.wait())
                .await
                .ok()
                .map(reason))
        };
        wait(py, fut)
    }
}
