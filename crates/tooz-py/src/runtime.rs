//! The process's tokio runtime, and running futures on it from Python threads.
//!
//! A runtime's threads do not survive `fork()`: the child gets a runtime of its own on first
//! use, and every object made before the fork refuses to work there (`Owner::check`), so a
//! child never silently shares its parent's connections or sessions. Objects from the parent
//! are forgotten, not dropped, in the child: dropping them would touch the parent's runtime.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::{panicked, to_py, NativeError};

static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// The runtime of this process (made on first use, again in a forked child).
pub fn runtime() -> PyResult<&'static Runtime> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if let Some((owner, rt)) = *slot {
        if owner == pid {
            return Ok(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tooz-rs")
        .enable_all()
        .build()
        .map_err(|e| {
            NativeError::new_err(("ToozError", format!("cannot start a runtime: {e}"), (), ()))
        })?;
    // Never dropped: a forked child must not join threads that exist only in its parent.
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// The process an object was made in.
#[derive(Clone, Copy)]
pub struct Owner(u32);

impl Owner {
    pub fn here() -> Self {
        Owner(std::process::id())
    }

    /// True in the process the object was made in.
    pub fn is_here(self) -> bool {
        self.0 == std::process::id()
    }

    /// Refuses use in a forked child.
    pub fn check(self) -> PyResult<()> {
        if self.is_here() {
            return Ok(());
        }
        Err(NativeError::new_err((
            "Forked",
            format!(
                "this object was made in process {} before a fork; a child process must \
                 make and start its own coordinator",
                self.0
            ),
            (),
            (),
        )))
    }
}

/// Runs `fut` to completion with the GIL released: for calls bounded by the operation
/// timeout. A panic becomes a `NativeError`.
pub fn run<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = tooz::Result<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    let result = py.detach(|| catch_unwind(AssertUnwindSafe(|| rt.block_on(fut))));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(to_py(error)),
        Err(payload) => Err(panicked(payload)),
    }
}

/// How often a long wait looks for a pending Python signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Runs `fut` (which may wait without bound) with the GIL released, on the calling thread
/// as `run` does, in slices of 100 ms between which it looks for Python signals: a
/// `KeyboardInterrupt` drops (cancels) the wait. The future lives across the slices.
pub fn wait<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = tooz::Result<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    // Declared before the future, so dropped after it: a future dropped when the wait is
    // interrupted runs its clean-up (a queued lock request's, say) within the runtime.
    let _within = rt.enter();
    let mut fut = std::pin::pin!(fut);
    loop {
        let slice = py.detach(|| {
            let slice = async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await };
            catch_unwind(AssertUnwindSafe(|| rt.block_on(slice)))
        });
        match slice {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(error))) => return Err(to_py(error)),
            Ok(Err(_elapsed)) => py.check_signals()?,
            Err(payload) => return Err(panicked(payload)),
        }
    }
}
