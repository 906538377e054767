//! The fixture that stops the coordinators a case started, whatever way the case ended.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use libtest_mimic::Failed;
use tooz::Coordinator;

/// Longest the fixture waits for the coordinators a case left running to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Every coordinator a case started through its [`Ctx`](crate::ctx::Ctx) (`coord`, `coord_as`,
/// `coord_at`), so that cases need not stop them by hand.
///
/// One fixture serves one case: [`Ctx::with_fixture`](crate::ctx::Ctx::with_fixture) gives the
/// case a fresh one (shared by every clone of its `Ctx`) and, once the case is over — passed,
/// failed, panicked or cut short by the harness's timeout — stops, newest first, each of its
/// coordinators that is still started. Coordinators the case stopped itself are left alone, so
/// a case stops one by hand only when the stop is what it tests (a stop whose effect it then
/// checks, a stop-then-start lifecycle, ...).
///
/// A coordinator the case left running must stop cleanly: a stop error fails the case, as it
/// did when each case ended with its own `stop()`. That holds for coordinators the case
/// troubled without breaking their session (a lock broken under them, their member removed by
/// a twin): `stop` tolerates the leave and the release failing, and the driver's own stop must
/// still succeed. A case that does break a session on purpose — a member whose process
/// "vanishes" — hands the coordinator to [`Ctx::vanish`](crate::ctx::Ctx::vanish), which takes
/// it off the fixture: stopping it would leave its groups and release its locks, which is
/// exactly what the case waits for the backend's timeout to do, and the fixture must not keep
/// it alive either.
#[derive(Clone, Default)]
pub struct Fixture {
    coords: Arc<Mutex<Vec<Coordinator>>>,
}

impl Fixture {
    /// Records a started coordinator, to be stopped when the case ends.
    pub fn track(&self, coord: &Coordinator) {
        self.coords.lock().unwrap().push(coord.clone());
    }

    /// Stops tracking `coord` (and every clone of it), dropping the fixture's reference.
    pub fn forget(&self, coord: &Coordinator) {
        let mut coords = self.coords.lock().unwrap();
        let before = coords.len();
        coords.retain(|c| !same(c, coord));
        assert!(
            coords.len() < before,
            "{} is not a coordinator of this case",
            coord.member_id()
        );
    }

    /// Runs `body`, then stops the coordinators it left started, also when it panicked (the
    /// panic then goes on once they are stopped). A stop failure fails an outcome that was a
    /// success, and is added to one that was a failure.
    pub async fn run<T>(&self, body: impl Future<Output = Result<T, Failed>>) -> Result<T, Failed> {
        let outcome = AssertUnwindSafe(body).catch_unwind().await;
        let stopped = match tokio::time::timeout(STOP_TIMEOUT, self.stop_all()).await {
            Ok(stopped) => stopped,
            Err(_) => Err(format!(
                "stopping the coordinators the case left running took more than {STOP_TIMEOUT:?}"
            )),
        };
        match (outcome, stopped) {
            (Ok(Ok(value)), Ok(())) => Ok(value),
            (Ok(Ok(_)), Err(stop)) => Err(stop.into()),
            (Ok(Err(failed)), Ok(())) => Err(failed),
            (Ok(Err(failed)), Err(stop)) => {
                Err(format!("{}\nthen: {stop}", failed.message().unwrap_or("failed")).into())
            }
            (Err(panic), stopped) => {
                if let Err(stop) = stopped {
                    eprintln!("{stop}");
                }
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Stops, newest first, every tracked coordinator still started; tries them all and
    /// reports every failure.
    async fn stop_all(&self) -> Result<(), String> {
        let coords = std::mem::take(&mut *self.coords.lock().unwrap());
        let mut failures = Vec::new();
        for coord in coords.iter().rev().filter(|c| c.is_started()) {
            if let Err(error) = coord.stop().await {
                failures.push(format!(
                    "stopping {} (left running by the case) failed: {error}",
                    coord.member_id()
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }
}

/// Whether `a` and `b` are clones of one coordinator: clones share one session, and with it
/// the member id they hand out by reference.
fn same(a: &Coordinator, b: &Coordinator) -> bool {
    std::ptr::eq(a.member_id(), b.member_id())
}
