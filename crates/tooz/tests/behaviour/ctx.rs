//! What every case gets: the URL under test, fresh coordinators (stopped by the fixture when
//! the case ends), unique names.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use libtest_mimic::Failed;
use tooz::{Characteristic, Characteristics, Coordinator, Error, Id, Support, WatchKind};

use crate::fixture::Fixture;

/// A case's outcome.
pub type Outcome = Result<(), Failed>;

/// What a case needs from the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Nothing,
    Groups,
    UpdateCapabilities,
    MemberInfo,
    Watch,
    /// Characteristic-like: the driver pushes every membership change (no coalescing).
    PushWatch,
    Election,
    Locks,
    SharedLocks,
    BreakLock,
    /// Characteristic: coordinates processes.
    Processes,
    /// Characteristic: coordinates hosts.
    Hosts,
    /// Characteristic: liveness rests on timeouts (no NON_TIMEOUT_BASED).
    TimeoutBased,
}

impl Need {
    pub fn is_characteristic(self) -> bool {
        matches!(
            self,
            Need::Processes | Need::Hosts | Need::TimeoutBased | Need::PushWatch
        )
    }
}

/// One case of the suite.
pub struct Case {
    pub name: &'static str,
    pub need: Need,
    pub run: fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

/// Registers cases: `cases![need => fn_name, ...]`.
#[macro_export]
macro_rules! cases {
    ($($need:ident => $name:ident),* $(,)?) => {
        vec![$($crate::ctx::Case {
            name: stringify!($name),
            need: $crate::ctx::Need::$need,
            run: |ctx| Box::pin($name(ctx)),
        }),*]
    };
}

/// The driver under test, and the fixture of the case using it.
#[derive(Clone)]
pub struct Ctx {
    pub url: String,
    /// The driver's scheme, naming the tests (with the URL's options when a scheme repeats).
    pub scheme: String,
    pub support: Support,
    pub characteristics: Characteristics,
    /// Where the coordinators made by `coord*` are recorded; a fresh one per
    /// [`with_fixture`](Ctx::with_fixture).
    fixture: Fixture,
}

impl Ctx {
    /// Learns what the driver at `url` declares.
    pub fn probe(url: &str) -> Result<Ctx, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let coord = runtime.block_on(Coordinator::connect(url, "probe"))?;
        Ok(Ctx {
            url: url.to_string(),
            scheme: coord.driver_name().to_string(),
            support: coord.support(),
            characteristics: coord.characteristics(),
            fixture: Fixture::default(),
        })
    }

    /// Runs `body` with a clone of this context that has a fixture of its own, then stops
    /// every coordinator `body` left started (see [`Fixture`]): how the harness runs a case.
    pub async fn with_fixture<T, F, Fut>(&self, body: F) -> Result<T, Failed>
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, Failed>>,
    {
        let fixture = Fixture::default();
        let ctx = Ctx {
            fixture: fixture.clone(),
            ..self.clone()
        };
        fixture.run(body(ctx)).await
    }

    /// Runs `body` on a thread of its own with a runtime of its own, as another process's
    /// main would, under a fixture of its own: the coordinators `body` starts are stopped on
    /// that runtime, before it goes away with the thread. A panic in `body` panics the thread.
    pub fn spawn_thread<T, F, Fut>(&self, body: F) -> std::thread::JoinHandle<Result<T, Failed>>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let ctx = self.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(ctx.with_fixture(|ctx| async move { Ok(body(ctx).await) }))
        })
    }

    pub fn has(&self, need: Need) -> bool {
        let s = &self.support;
        let c = self.characteristics;
        match need {
            Need::Nothing => true,
            Need::Groups => s.groups,
            Need::UpdateCapabilities => s.update_capabilities,
            Need::MemberInfo => s.member_info,
            Need::Watch => s.watch != WatchKind::None,
            Need::PushWatch => s.watch == WatchKind::Push,
            Need::Election => s.election,
            Need::Locks => s.locks,
            Need::SharedLocks => s.shared_locks,
            Need::BreakLock => s.break_lock,
            Need::Processes => c.contains(Characteristic::DistributedAcrossProcesses),
            Need::Hosts => c.contains(Characteristic::DistributedAcrossHosts),
            Need::TimeoutBased => !c.contains(Characteristic::NonTimeoutBased),
        }
    }

    /// A unique name, so that cases and runs never collide.
    pub fn name(&self, prefix: &str) -> Id {
        Id::from(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
    }

    /// A started coordinator with a fresh member id, stopped by the fixture if the case leaves
    /// it running.
    pub async fn coord(&self) -> Coordinator {
        self.coord_as(self.name("member")).await
    }

    /// A started coordinator for `member`.
    pub async fn coord_as(&self, member: impl Into<Id>) -> Coordinator {
        self.coord_at(&self.url, member).await
    }

    /// A started coordinator for `member` at another URL of the same backend.
    pub async fn coord_at(&self, url: &str, member: impl Into<Id>) -> Coordinator {
        let coord = crate::support::started(url, member).await;
        self.fixture.track(&coord);
        coord
    }

    /// Drops `coord` without stopping it, as a process that dies would, and takes it off the
    /// fixture, which would otherwise keep it alive and stop it. Its session then ends only by
    /// the backend's timeout. `coord` must be the last clone the case holds.
    pub fn vanish(&self, coord: Coordinator) {
        self.fixture.forget(&coord);
        drop(coord);
    }

    /// The URL with extra query options.
    pub fn url_with(&self, query: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", self.url)
    }
}

/// Asserts that `result` is the typed error matching `pattern`.
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $($pattern:tt)+) => {
        match $result {
            Err($($pattern)+) => {}
            other => panic!(
                "expected {}, got {:?}",
                stringify!($($pattern)+),
                other.map(|_| "Ok(..)")
            ),
        }
    };
}

fn is_not_implemented<T>(result: tooz::Result<T>) -> Outcome {
    match result {
        Err(Error::NotImplemented { .. }) => Ok(()),
        Err(other) => Err(format!("expected NotImplemented, got error {other}").into()),
        Ok(_) => Err("expected NotImplemented, got Ok".into()),
    }
}

/// For a driver that declares `need` unsupported: the matching call must say NotImplemented.
pub async fn expect_not_implemented(ctx: &Ctx, need: Need) -> Outcome {
    let coord = ctx.coord().await;
    let group = ctx.name("group");
    let lock = coord.lock(ctx.name("lock"));
    match need {
        Need::Groups => is_not_implemented(coord.create_group(group).await),
        Need::UpdateCapabilities => is_not_implemented(coord.update_capabilities(group, ()).await),
        Need::MemberInfo => is_not_implemented(coord.get_member_info(group, "m").await),
        Need::Watch => is_not_implemented(coord.watch_group(group).await),
        Need::Election => is_not_implemented(coord.campaign(group).await),
        Need::Locks => is_not_implemented(lock.try_acquire().await),
        Need::SharedLocks => is_not_implemented(lock.try_acquire_shared().await),
        Need::BreakLock => is_not_implemented(lock.break_lock().await),
        other => Err(format!("no NotImplemented probe for {other:?}").into()),
    }
}

/// Waits until `run_watchers` has delivered at least `count` events, or fails after 10 s.
pub async fn watch_events(coord: &Coordinator, count: usize) -> Vec<tooz::GroupEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    while events.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {count} events came: {events:?}",
            events.len()
        );
        events.extend(coord.run_watchers(Some(left)).await.expect("run_watchers"));
    }
    events
}

/// Exit codes of the child mode.
pub const CHILD_ACQUIRED: i32 = 0;
pub const CHILD_BUSY: i32 = 3;
pub const CHILD_ERROR: i32 = 2;

/// Child-process mode, used by the multi-process cases: with `TOOZ_BEHAVIOUR_CHILD=try_lock`,
/// try once to take `TOOZ_CHILD_LOCK` at `TOOZ_CHILD_URL`, release it, and exit.
pub fn child_main() -> Option<i32> {
    let mode = std::env::var("TOOZ_BEHAVIOUR_CHILD").ok()?;
    let url = std::env::var("TOOZ_CHILD_URL").ok()?;
    let lock = std::env::var("TOOZ_CHILD_LOCK").ok()?;
    let runtime = tokio::runtime::Runtime::new().ok()?;
    let code = runtime.block_on(async move {
        let attempt = async {
            let coord = Coordinator::connect(&url, format!("child-{}", std::process::id())).await?;
            coord.start().await?;
            let acquired = match mode.as_str() {
                "try_lock" => coord.lock(lock).try_acquire().await?,
                _ => None,
            };
            let code = match acquired {
                Some(guard) => {
                    guard.release().await?;
                    CHILD_ACQUIRED
                }
                None => CHILD_BUSY,
            };
            coord.stop().await?;
            Ok::<i32, Error>(code)
        };
        attempt.await.unwrap_or_else(|e| {
            eprintln!("child: {e}");
            CHILD_ERROR
        })
    });
    Some(code)
}

/// Runs this test binary in child mode and returns its exit code.
pub async fn run_child(url: &str, lock: &Id) -> i32 {
    let exe = std::env::current_exe().expect("test binary path");
    let status = tokio::process::Command::new(exe)
        .env("TOOZ_BEHAVIOUR_CHILD", "try_lock")
        .env("TOOZ_CHILD_URL", url)
        .env("TOOZ_CHILD_LOCK", lock.as_str().expect("utf-8 lock name"))
        .status()
        .await
        .expect("spawn child");
    status.code().unwrap_or(CHILD_ERROR)
}
