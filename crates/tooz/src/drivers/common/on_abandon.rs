//! The clean-up of an acquire that gives up, fails or whose future is dropped.

use std::future::Future;

use futures::future::BoxFuture;
use tokio::runtime::Handle;

enum Cleanup {
    Now(Box<dyn FnOnce() + Send>),
    Spawn(Handle, BoxFuture<'static, ()>),
}

/// Runs a clean-up when dropped, unless [`disarm`](OnAbandon::disarm)ed: the undoing of an
/// acquire's partial work (a queue place, a lock granted just as the caller gave up), so that
/// an abandoned acquire never leaves a lock taken or a waiter queued.
#[must_use = "dropping it at once runs the clean-up"]
pub(crate) struct OnAbandon(Option<Cleanup>);

impl OnAbandon {
    /// Runs `cleanup` in place when dropped armed (it must not block).
    pub(crate) fn run(cleanup: impl FnOnce() + Send + 'static) -> Self {
        OnAbandon(Some(Cleanup::Now(Box::new(cleanup))))
    }

    /// Spawns `cleanup` on `runtime` when dropped armed (a drop cannot wait for I/O).
    pub(crate) fn spawn(
        runtime: Handle,
        cleanup: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        OnAbandon(Some(Cleanup::Spawn(runtime, Box::pin(cleanup))))
    }

    /// The acquire finished as it should: nothing to undo.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }

    /// Undoes now and waits for it (a wait that ended without the lock).
    pub(crate) async fn undo_now(mut self) {
        match self.0.take() {
            Some(Cleanup::Now(cleanup)) => cleanup(),
            Some(Cleanup::Spawn(_, cleanup)) => cleanup.await,
            None => {}
        }
    }
}

impl Drop for OnAbandon {
    fn drop(&mut self) {
        match self.0.take() {
            Some(Cleanup::Now(cleanup)) => cleanup(),
            Some(Cleanup::Spawn(runtime, cleanup)) => {
                runtime.spawn(cleanup);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn undoes_unless_disarmed() {
        let undone = Arc::new(AtomicUsize::new(0));
        let count = |undone: &Arc<AtomicUsize>| {
            let undone = undone.clone();
            move || {
                undone.fetch_add(1, Ordering::SeqCst);
            }
        };
        drop(OnAbandon::run(count(&undone)));
        assert_eq!(undone.load(Ordering::SeqCst), 1);
        OnAbandon::run(count(&undone)).disarm();
        assert_eq!(undone.load(Ordering::SeqCst), 1);
        OnAbandon::run(count(&undone)).undo_now().await;
        assert_eq!(undone.load(Ordering::SeqCst), 2);
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(OnAbandon::spawn(Handle::current(), async move {
            tx.send(()).unwrap();
        }));
        rx.await.expect("the spawned clean-up ran");
    }
}
