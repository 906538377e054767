//! Fault tests of the zookeeper driver on the 3-node ensemble of `scripts/services` (`zk3`,
//! started here with `scripts/services up zk3` and left running), for what the per-URL fault
//! suite (`tests/faults/`: cut-off and killed holders, server restarts, lost replies, black
//! holes) does not cover:
//!
//! * the server a client is on is killed: the session moves to another server, nothing is lost;
//! * the ensemble's leader is killed: the session survives the election, nothing is lost;
//! * the lock queue's regressions: a waiter whose session expires queues again; a queued
//!   acquire whose reply was lost gets the lock once healed and leaves nothing behind; a
//!   waiter whose last delete is lost leaves no orphan; a waiter paused past its session does
//!   not take the lock on resume.
//!
//! Every killed member is restarted at the end of its test (bounded waits). The tests run one
//! at a time. Without ZooKeeper installed they are skipped, except under `CI=true`.
#![cfg(feature = "zookeeper")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use support::{signal, wait_for_file, write_atomically, TempDir};
use tooz::{ConnectionState, Coordinator, Id};
use tooz_testkit::{services, FaultProxy};

const ZK3: &str = "zookeeper://127.0.0.1:2281,127.0.0.1:2282,127.0.0.1:2283";
const MEMBERS: [(&str, u16); 3] = [("zk3-1", 2281), ("zk3-2", 2282), ("zk3-3", 2283)];
const CHILD_WAIT_ENV: &str = "TOOZ_ZK_FAULT_WAITER";
/// Longest any single wait of these tests may take.
const WAIT: Duration = Duration::from_secs(30);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the ensemble for one test: one test at a time, every member up. `None` = skip.
async fn ensemble() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().await;
    let up = tokio::task::spawn_blocking(|| services::run(&["up", "zk3"]))
        .await
        .unwrap();
    match up {
        Ok(_) => Some(guard),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: cannot start zk3: {error}");
            None
        }
        Err(error) => panic!("zk3 is required under CI: {error}"),
    }
}

/// Restarts the members it names when dropped, even if the test failed.
struct Restart(Vec<&'static str>);

impl Drop for Restart {
    fn drop(&mut self) {
        for member in &self.0 {
            if let Err(error) = services::restart(member) {
                eprintln!("restarting {member} failed: {error}");
            }
        }
    }
}

/// Sends a four-letter command to a member and returns its answer.
fn four_letter(port: u16, command: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let _ = stream.write_all(command.as_bytes());
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// The member whose connections include session `session`.
fn member_serving(session: i64) -> Option<(&'static str, u16)> {
    let needle = format!("sid={session:#x}");
    MEMBERS
        .into_iter()
        .find(|(_, port)| four_letter(*port, "cons").contains(&needle))
}

fn leader() -> Option<(&'static str, u16)> {
    MEMBERS
        .into_iter()
        .find(|(_, port)| four_letter(*port, "srvr").contains("Mode: leader"))
}

async fn started(url: &str, member: &str) -> Coordinator {
    let coord = Coordinator::connect(url, member).await.unwrap();
    coord.start().await.unwrap();
    coord
}

/// The ZooKeeper session of `coord`, read from its membership of `group`.
async fn session_of(coord: &Coordinator, group: &str) -> i64 {
    let info = coord
        .get_member_info(group, coord.member_id())
        .await
        .unwrap();
    info.extra["session"].as_i64().unwrap()
}

/// Waits until `coord`'s state satisfies `want`.
async fn wait_state(coord: &Coordinator, want: impl Fn(ConnectionState) -> bool) {
    let mut states = coord.connection_states();
    tokio::time::timeout(WAIT, async {
        while !want(*states.borrow_and_update()) {
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("state stuck at {:?}", coord.connection_state()));
}

/// Retries `op` while it fails with a transient error (connection trouble), bounded.
async fn retry<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = tooz::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(error) if error.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("gave up: {error:?}"),
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Records every connection state a coordinator goes through.
fn record_states(coord: &Coordinator) -> std::sync::Arc<Mutex<Vec<ConnectionState>>> {
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let mut states = coord.connection_states();
    let sink = seen.clone();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            sink.lock().unwrap().push(state);
        }
    });
    seen
}

#[tokio::test]
async fn killing_the_server_a_client_is_on_moves_the_session() {
    let Some(_ensemble) = ensemble().await else {
        return;
    };
    let (group, lock) = (unique("group"), unique("lock"));
    let a = started(ZK3, "mover").await;
    let b = started(ZK3, "other").await;
    a.join_group_create(group.as_str(), b"caps").await.unwrap();
    let guard = a.lock(lock.as_str()).acquire().await.unwrap();
    let session = session_of(&a, &group).await;
    let (member, _) = member_serving(session).expect("a member serves the session");
    let seen = record_states(&a);

    let _restart = Restart(vec![member]);
    services::kill_async(member).await.unwrap();
    // The client may be back before the kill command returns: read the recorded states.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(seen.lock().unwrap().contains(&ConnectionState::Suspended)
        && a.connection_state().is_connected())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "states: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(guard.lost_reason(), None, "nothing held may be lost");
    assert_eq!(retry(|| session_of_result(&a, &group)).await, session);
    let (now_on, _) = member_serving(session).expect("the session lives on");
    assert_ne!(now_on, member, "the session moved to another server");
    assert!(
        retry(|| async { b.lock(lock.as_str()).try_acquire().await })
            .await
            .is_none()
    );
    assert_eq!(
        retry(|| async { b.lock(lock.as_str()).holder().await }).await,
        Some(Id::from("mover"))
    );
    assert!(retry(|| b.get_members(group.as_str()))
        .await
        .contains(a.member_id()));
    let states = seen.lock().unwrap().clone();
    assert!(!states.contains(&ConnectionState::Lost), "{states:?}");
    assert!(guard.release().await.unwrap());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

async fn session_of_result(coord: &Coordinator, group: &str) -> tooz::Result<i64> {
    let info = coord.get_member_info(group, coord.member_id()).await?;
    Ok(info.extra["session"].as_i64().unwrap_or_default())
}

#[tokio::test]
async fn killing_the_ensemble_leader_loses_nothing() {
    let Some(_ensemble) = ensemble().await else {
        return;
    };
    let (group, lock) = (unique("group"), unique("lock"));
    let a = started(ZK3, "survivor").await;
    a.join_group_create(group.as_str(), ()).await.unwrap();
    let guard = a.lock(lock.as_str()).acquire().await.unwrap();
    let leadership = a.campaign(group.as_str()).await.unwrap();
    let session = session_of(&a, &group).await;
    let (member, _) = leader().expect("the ensemble has a leader");

    let _restart = Restart(vec![member]);
    services::kill_async(member).await.unwrap();
    // The followers drop their clients while they elect a new leader; wait for one.
    let deadline = tokio::time::Instant::now() + WAIT;
    while leader().is_none_or(|(m, _)| m == member) {
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = unique("after");
    retry(|| a.join_group_create(other.as_str(), ())).await;
    wait_state(&a, ConnectionState::is_connected).await;

    assert_eq!(guard.lost_reason(), None);
    assert_eq!(leadership.lost_reason(), None);
    assert_eq!(retry(|| session_of_result(&a, &group)).await, session);
    let b = started(ZK3, "checker").await;
    assert!(b.lock(lock.as_str()).try_acquire().await.unwrap().is_none());
    assert_eq!(
        b.get_leader(group.as_str()).await.unwrap(),
        Some(Id::from("survivor"))
    );
    assert!(guard.release().await.unwrap());
    assert!(leadership.resign().await.unwrap());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Child entry point: in a parent's child process, wait for a lock; once it is acquired,
/// write its fencing token to `DIR/acquired` and hold it until killed.
#[test]
fn child_waits_for_lock() {
    let Ok(spec) = std::env::var(CHILD_WAIT_ENV) else {
        return; // not a child: nothing to do
    };
    let [url, lock, dir]: [&str; 3] = spec.split('|').collect::<Vec<_>>().try_into().unwrap();
    let dir = std::path::Path::new(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let coord = started(url, "waiter").await;
        std::fs::write(dir.join("started"), b"").unwrap();
        let guard = coord.lock(lock).acquire_timeout(WAIT).await.unwrap();
        let token = guard.fencing_token().0.to_string();
        write_atomically(&dir.join("acquired"), token);
        tokio::time::sleep(Duration::from_secs(60)).await; // bounded: the parent kills us
    });
}

/// Runs the child entry point `name` with `spec` in env variable `env`.
fn spawn_child(name: &str, env: &str, spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, spec)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_waiter_whose_session_expires_queues_again() {
    let Some(_ensemble) = ensemble().await else {
        return;
    };
    let lock = unique("requeue");
    let proxy = FaultProxy::start("127.0.0.1:2282".parse().unwrap())
        .await
        .unwrap();
    let cut_url = format!("zookeeper://{}?timeout=2", proxy.addr());
    let holder = started(ZK3, "requeue-holder").await;
    let waiter_coord = started(&cut_url, "requeue-waiter").await;
    let held = holder.lock(lock.as_str()).acquire().await.unwrap();
    let seen = record_states(&waiter_coord);
    let waiter = {
        let (coord, lock) = (waiter_coord.clone(), lock.clone());
        tokio::spawn(async move { coord.lock(lock.as_str()).acquire_timeout(WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());

    // Cut off past the session timeout: the waiter's node dies with its session.
    proxy.black_hole();
    wait_state(&waiter_coord, |s| s == ConnectionState::Lost).await;
    proxy.heal();
    wait_state(&waiter_coord, |s| s == ConnectionState::Connected).await;
    assert!(!waiter.is_finished(), "the wait goes on in the new session");

    let first = held.fencing_token();
    assert!(held.release().await.unwrap());
    let taken = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("the waiter gets the lock")
        .unwrap()
        .expect("acquired after queueing again");
    assert!(taken.fencing_token() > first);
    assert!(holder
        .lock(lock.as_str())
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    let states = seen.lock().unwrap().clone();
    assert!(states.contains(&ConnectionState::Lost), "{states:?}");
    assert!(taken.release().await.unwrap());
    waiter_coord.stop().await.unwrap();
    holder.stop().await.unwrap();
}

/// The cast of the tests on a client behind a proxy: `holder` (direct) holds `lock`; `client` reaches the
/// ensemble through `proxy` with session timeout `timeout` seconds; `other` (direct) waits
/// to show that nothing of `client` is left in the queue.
struct Scene {
    lock: String,
    proxy: FaultProxy,
    holder: Coordinator,
    other: Coordinator,
    client: Coordinator,
    /// The holder's acquisition, until a test releases it.
    held: Option<tooz::LockGuard>,
}

impl Scene {
    async fn new(prefix: &str, timeout: u32) -> Scene {
        let lock = unique(prefix);
        let proxy = FaultProxy::start("127.0.0.1:2283".parse().unwrap())
            .await
            .unwrap();
        let url = format!("zookeeper://{}?timeout={timeout}", proxy.addr());
        let holder = started(ZK3, &format!("{prefix}-holder")).await;
        let other = started(ZK3, &format!("{prefix}-other")).await;
        let client = started(&url, &format!("{prefix}-client")).await;
        let held = Some(holder.lock(lock.as_str()).acquire().await.unwrap());
        Scene {
            lock,
            proxy,
            holder,
            other,
            client,
            held,
        }
    }

    /// Heals the proxy and waits until the client is connected again.
    async fn heal(&self) {
        self.proxy.heal();
        wait_state(&self.client, |s| {
            matches!(s, ConnectionState::Connected | ConnectionState::Reconnected)
        })
        .await;
    }

    /// Checks that the client's acquire gave up (the lock is held), heals the proxy, and
    /// shows that nothing of the client is left in the queue.
    async fn gave_up_and_left_nothing(self, gave_up: tooz::Result<tooz::LockGuard>) {
        assert!(
            gave_up.is_err(),
            "the lock is held: the acquire must give up"
        );
        self.heal().await;
        self.other_is_next().await;
    }

    /// Shows that nothing of the client is left in the queue: `other` queues, the holder
    /// releases, and `other` gets the lock at once. Then stops everyone.
    async fn other_is_next(mut self) {
        let next = {
            let (other, lock) = (self.other.clone(), self.lock.clone());
            tokio::spawn(async move { other.lock(lock.as_str()).acquire_timeout(WAIT).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(self.held.take().unwrap().release().await.unwrap());
        let got = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("no orphan blocks the queue")
            .unwrap()
            .unwrap();
        got.release().await.unwrap();
        self.stop().await;
    }

    async fn stop(self) {
        for coord in [self.client, self.other, self.holder] {
            coord.stop().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_lost_reply_to_a_queued_acquire_leaves_no_orphan() {
    let Some(_ensemble) = ensemble().await else {
        return;
    };
    let mut scene = Scene::new("lost-reply", 2).await;
    let lock = scene.lock.clone();

    // The client's acquire reaches the server, its replies do not.
    scene.proxy.drop_replies();
    let attempt = {
        let (client, lock) = (scene.client.clone(), lock.clone());
        tokio::spawn(async move { client.lock(lock.as_str()).acquire_timeout(WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    scene.heal().await;
    assert!(scene.held.take().unwrap().release().await.unwrap());
    let got = tokio::time::timeout(WAIT, attempt)
        .await
        .expect("the client's acquire ends")
        .unwrap()
        .expect("the client gets the lock once the network heals");
    assert!(got.release().await.unwrap());
    // Nothing of the client is left in the queue: the other client gets the lock at once.
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        scene.other.lock(lock.as_str()).acquire(),
    )
    .await
    .expect("no orphan blocks the queue")
    .unwrap();
    next.release().await.unwrap();
    scene.stop().await;
}

#[tokio::test]
async fn a_waiter_whose_last_delete_is_lost_leaves_no_orphan() {
    let Some(_ensemble) = ensemble().await else {
        return;
    };
    let scene = Scene::new("lost-delete", 4).await;

    // The client queues behind the holder; then its connection goes silent (no reset), so
    // the delete it sends when its deadline passes is lost, and fails once the client gives
    // up on the connection. Its session lives on.
    let waiting = {
        let (client, lock) = (scene.client.clone(), scene.lock.clone());
        tokio::spawn(async move {
            client
                .lock(lock.as_str())
                .acquire_timeout(Duration::from_millis(1000))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    scene.proxy.black_hole();
    let gave_up = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the acquire ends")
        .unwrap();
    // Back within the session timeout, the session (and its nodes) survived; the client's
    // node is deleted all the same.
    scene.gave_up_and_left_nothing(gave_up).await;
}

#[tokio::test]
async fn a_waiter_paused_past_its_session_does_not_take_the_lock_on_resume() {
    let Some(_ensemble) = ensemble().await else {
        return;
    };
    let dir = TempDir::new("tooz-zk-paused-waiter");
    let lock = unique("paused-waiter");
    let holder = started(ZK3, "paused-waiter-holder").await;
    let other = started(ZK3, "paused-waiter-other").await;
    let held = holder.lock(lock.as_str()).acquire().await.unwrap();
    let spec = format!("{ZK3}?timeout=2|{lock}|{}", dir.0.display());
    let mut child = spawn_child("child_waits_for_lock", CHILD_WAIT_ENV, &spec);
    let started_file = dir.0.join("started");
    tokio::task::spawn_blocking(move || wait_for_file(&started_file))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // the child queues behind the holder

    // The child is stopped; the release's notification reaches its socket but is not read.
    // Its session expires meanwhile, and the other client takes the lock.
    signal(&child, libc::SIGSTOP);
    assert!(held.release().await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let taken = other
        .lock(lock.as_str())
        .acquire_timeout(WAIT)
        .await
        .expect("free once the paused waiter's session expired");

    // Resumed, the child reads the stale notification: it must not believe it holds the lock.
    signal(&child, libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acquired = dir.0.join("acquired");
    assert!(
        !acquired.exists(),
        "the resumed waiter took a lock someone else holds"
    );
    // It queued again in a new session: it is next.
    let theirs = taken.fencing_token();
    assert!(taken.release().await.unwrap());
    let seen = acquired.clone();
    tokio::task::spawn_blocking(move || wait_for_file(&seen))
        .await
        .unwrap();
    let token: u64 = std::fs::read_to_string(&acquired).unwrap().parse().unwrap();
    assert!(token > theirs.0);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    other.stop().await.unwrap();
    holder.stop().await.unwrap();
}
