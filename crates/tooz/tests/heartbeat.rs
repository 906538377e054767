//! The core's heartbeat loop, lock refresh and call path, on a timeout-based driver whose
//! heartbeat, lock keep-alive and lock queries can be made to fail or hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tooz::driver::{Driver, DriverFacts, LockRequest, SessionEvents, Support, WatchKind};
use tooz::{
    Characteristic, Characteristics, ConnectionState, Coordinator, FencingToken, Id, LostReason,
    Result,
};

const FLAKY_FACTS: DriverFacts = DriverFacts {
    characteristics: Characteristics::of(&[Characteristic::DistributedAcrossThreads]),
    support: Support {
        groups: false,
        update_capabilities: false,
        member_info: false,
        watch: WatchKind::None,
        election: false,
        locks: true,
        shared_locks: false,
        break_lock: true,
    },
    poll_interval: tooz::driver::DEFAULT_POLL_INTERVAL,
    options: &[],
};

/// The period the flaky driver's heartbeat asks for.
const BEAT_PERIOD: Duration = Duration::from_millis(40);

/// Locks in a map; heartbeats count and can fail; keep-alive can report the lock gone.
#[derive(Default)]
struct Flaky {
    locks: Mutex<HashMap<Id, String>>,
    beats: AtomicU64,
    heartbeat_fails: AtomicBool,
    heartbeat_hangs: AtomicBool,
    queries_hang: AtomicBool,
    locks_expire: AtomicBool,
}

#[async_trait]
impl Driver for Flaky {
    fn scheme(&self) -> &'static str {
        "flaky"
    }
    fn facts(&self) -> &DriverFacts {
        &FLAKY_FACTS
    }
    fn session_timeout(&self) -> Duration {
        Duration::from_millis(300)
    }
    async fn start(&self, _events: SessionEvents) -> Result<()> {
        Ok(())
    }
    async fn stop(&self) -> Result<()> {
        Ok(())
    }
    async fn heartbeat(&self) -> Result<Option<Duration>> {
        self.beats.fetch_add(1, Ordering::SeqCst);
        if self.heartbeat_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.heartbeat_fails.load(Ordering::SeqCst) {
            return Err(tooz::Error::Connection("heartbeat refused".into()));
        }
        Ok(Some(BEAT_PERIOD))
    }
    async fn lock_try_acquire(&self, req: &LockRequest) -> Result<Option<FencingToken>> {
        let mut locks = self.locks.lock().unwrap();
        if locks.contains_key(&req.name) {
            return Ok(None);
        }
        locks.insert(req.name.clone(), req.nonce.clone());
        Ok(Some(FencingToken(1)))
    }
    async fn lock_release(&self, req: &LockRequest) -> Result<bool> {
        let mut locks = self.locks.lock().unwrap();
        Ok(locks.remove(&req.name).is_some())
    }
    async fn lock_holder(&self, _name: &Id) -> Result<Option<Id>> {
        if self.queries_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(None)
    }
    async fn lock_break(&self, name: &Id) -> Result<bool> {
        if self.queries_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(self.locks.lock().unwrap().remove(name).is_some())
    }
    async fn lock_refresh(&self, req: &LockRequest) -> Result<bool> {
        if self.locks_expire.load(Ordering::SeqCst) {
            self.locks.lock().unwrap().remove(&req.name);
        }
        Ok(self.locks.lock().unwrap().get(&req.name) == Some(&req.nonce))
    }
}

async fn start(driver: &Arc<Flaky>) -> Coordinator {
    let coord = Coordinator::with_driver(driver.clone(), "m").unwrap();
    coord.start().await.unwrap();
    coord
}

#[tokio::test]
async fn heartbeats_run_in_the_background() {
    let driver = Arc::new(Flaky::default());
    let coord = start(&driver).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(driver.beats.load(Ordering::SeqCst) >= 4, "too few beats");
    coord.stop().await.unwrap();
    let after_stop = driver.beats.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        driver.beats.load(Ordering::SeqCst),
        after_stop,
        "beats after stop"
    );
}

/// The period a heartbeat returns is the longest wait before the next one, counted from the
/// start of the beat: the core neither halves it nor adds the beat's own duration.
#[tokio::test(start_paused = true)]
async fn the_next_beat_comes_one_returned_period_after_the_last() {
    let driver = Arc::new(Flaky::default());
    let coord = start(&driver).await;
    let first = driver.beats.load(Ordering::SeqCst); // the beat of `start`
    tokio::time::sleep(BEAT_PERIOD * 10 + BEAT_PERIOD / 2).await;
    assert_eq!(driver.beats.load(Ordering::SeqCst) - first, 10);
    coord.stop().await.unwrap();
}

#[tokio::test]
async fn a_lock_the_backend_dropped_is_reported_lost() {
    let driver = Arc::new(Flaky::default());
    let coord = start(&driver).await;
    let guard = coord.lock("l").acquire().await.unwrap();
    driver.locks_expire.store(true, Ordering::SeqCst);
    let reason = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .unwrap();
    assert_eq!(reason, LostReason::Expired);
    coord.stop().await.unwrap();
}

/// Sets `fault` on a started coordinator holding a lock, then checks the session goes
/// `Suspended`, then `Lost`, and the lock reports `SessionLost`.
async fn suspends_then_loses_the_session(fault: impl Fn(&Flaky)) {
    let driver = Arc::new(Flaky::default());
    let coord = start(&driver).await;
    let guard = coord.lock("l").acquire().await.unwrap();
    let mut states = coord.connection_states();
    fault(&driver);
    tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|s| *s == ConnectionState::Suspended),
    )
    .await
    .unwrap()
    .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .unwrap();
    assert_eq!(reason, LostReason::SessionLost);
    assert_eq!(coord.connection_state(), ConnectionState::Lost);
    coord.stop().await.unwrap();
}

#[tokio::test]
async fn failing_heartbeats_suspend_then_lose_the_session() {
    suspends_then_loses_the_session(|d| d.heartbeat_fails.store(true, Ordering::SeqCst)).await;
}

/// A heartbeat that never answers (a black-holed connection) counts as failed once the
/// operation bound has passed: the session is suspended, then lost.
#[tokio::test]
async fn a_hanging_heartbeat_suspends_then_loses_the_session() {
    suspends_then_loses_the_session(|d| d.heartbeat_hangs.store(true, Ordering::SeqCst)).await;
}

#[tokio::test]
async fn a_heartbeat_that_recovers_in_time_keeps_the_lock() {
    let driver = Arc::new(Flaky::default());
    let coord = start(&driver).await;
    let guard = coord.lock("l").acquire().await.unwrap();
    let mut states = coord.connection_states();
    driver.heartbeat_fails.store(true, Ordering::SeqCst);
    states
        .wait_for(|s| *s == ConnectionState::Suspended)
        .await
        .unwrap();
    driver.heartbeat_fails.store(false, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|s| *s == ConnectionState::Reconnected),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // past the session timeout
    assert_eq!(guard.lost_reason(), None);
    assert!(guard.release().await.unwrap());
    coord.stop().await.unwrap();
}

#[tokio::test]
async fn unsupported_parts_say_not_implemented() {
    let driver = Arc::new(Flaky::default());
    let coord = start(&driver).await;
    for result in [
        coord.create_group("g").await.map(|_| ()),
        coord.get_groups().await.map(|_| ()),
        coord.campaign("g").await.map(|_| ()),
        coord.lock("l").try_acquire_shared().await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(tooz::Error::NotImplemented { .. })),
            "{result:?}"
        );
    }
    coord.stop().await.unwrap();
}

/// `holder()` and `break_lock()` take the core's call path like every operation: checked
/// for a started coordinator, and bounded by the operation timeout (here the session
/// timeout, 300 ms) when the backend does not answer.
#[tokio::test]
async fn lock_queries_are_bounded_like_every_call() {
    let driver = Arc::new(Flaky::default());
    let coord = Coordinator::with_driver(driver.clone(), "m").unwrap();
    let lock = coord.lock("l");
    assert!(matches!(lock.holder().await, Err(tooz::Error::NotStarted)));
    assert!(matches!(
        lock.break_lock().await,
        Err(tooz::Error::NotStarted)
    ));
    coord.start().await.unwrap();
    assert_eq!(lock.holder().await.unwrap(), None);
    driver.queries_hang.store(true, Ordering::SeqCst);
    for (what, result) in [
        ("holder", lock.holder().await.map(drop)),
        ("break_lock", lock.break_lock().await.map(drop)),
    ] {
        assert!(
            matches!(result, Err(tooz::Error::OperationTimedOut(_))),
            "{what}: {result:?}"
        );
    }
    coord.stop().await.unwrap();
}
