//! The etcd3 driver on the 3-node cluster of `scripts/services` (`etcd3x3`, started here with
//! `scripts/services up etcd3x3` and left running), for what the per-URL fault suite does
//! not cover:
//!
//! * a member is killed: the client goes on through the others, nothing is lost;
//! * the raft leader is killed: the lease survives the election, the lock stays held, and the
//!   next holder's fencing token is larger. The session rides out an election that ends
//!   within its timeout (TTL / 2, 4 s here; etcd's elections take about 1 s here).
//!
//! * one lease per coordinator, however many locks and groups it holds.
//!
//! Every killed member is restarted at the end of its test. The tests run one at a time.
//! Without etcd installed they are skipped, except under `CI=true`.
#![cfg(feature = "etcd3")]

use std::time::Duration;

use tooz::{Coordinator, Id};
use tooz_testkit::services;

const CLUSTER: &str = "etcd3://127.0.0.1:22379,127.0.0.1:22381,127.0.0.1:22383?timeout=8";
const MEMBERS: [(&str, &str); 3] = [
    ("etcd3x3-1", "127.0.0.1:22379"),
    ("etcd3x3-2", "127.0.0.1:22381"),
    ("etcd3x3-3", "127.0.0.1:22383"),
];
/// Longest any single wait of these tests may take.
const WAIT: Duration = Duration::from_secs(30);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the cluster for one test: one test at a time, every member up. `None` = skip.
async fn cluster() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().await;
    let up = tokio::task::spawn_blocking(|| services::run(&["up", "etcd3x3"]))
        .await
        .unwrap();
    match up {
        Ok(_) => Some(guard),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: cannot start etcd3x3: {error}");
            None
        }
        Err(error) => panic!("etcd3x3 is required under CI: {error}"),
    }
}

/// Restarts the member it names when dropped, even if the test failed.
struct Restart(&'static str);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Err(error) = services::restart(self.0) {
            eprintln!("restarting {} failed: {error}", self.0);
        }
    }
}

/// The member that leads the cluster now, from `etcdctl endpoint status`.
fn leader() -> &'static str {
    let endpoints: Vec<&str> = MEMBERS.iter().map(|(_, e)| *e).collect();
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoints.join(","),
            "endpoint",
            "status",
            "-w",
            "json",
        ])
        .output()
        .expect("etcdctl runs");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl JSON");
    let rows = status.as_array().expect("one row per endpoint");
    for row in rows {
        let s = &row["Status"];
        if s["leader"] == s["header"]["member_id"] {
            let endpoint = row["Endpoint"].as_str().unwrap();
            return MEMBERS.iter().find(|(_, e)| *e == endpoint).unwrap().0;
        }
    }
    panic!("no leader in {status}");
}

async fn coordinator(member: &str) -> Coordinator {
    let coord = Coordinator::connect(CLUSTER, member).await.unwrap();
    tokio::time::timeout(WAIT, coord.start())
        .await
        .unwrap()
        .unwrap();
    coord
}

/// Runs `op` until it succeeds (bounded by `WAIT`), returning how long it took.
async fn works_within<T, F, Fut>(what: &str, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = tooz::Result<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        match op().await {
            Ok(_) => return start.elapsed(),
            Err(error) => {
                assert!(start.elapsed() < WAIT, "{what}: still failing: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_member_keeps_the_session() {
    let Some(_cluster) = cluster().await else {
        return;
    };
    let group = format!("kill-member-{}", uuid::Uuid::new_v4().simple());
    let me = coordinator("survivor").await;
    me.join_group_create(group.as_str(), ()).await.unwrap();
    let lock = me.lock("kill-member-lock");
    let guard = lock.acquire().await.unwrap();

    // Whichever member the client talks to, one of the three is killed; then each other one.
    for (member, _) in MEMBERS {
        services::kill_async(member).await.unwrap();
        let _restart = Restart(member);
        let took = works_within("get_members", || me.get_members(group.as_str())).await;
        eprintln!("{member} killed: working again after {took:?}");
        let other = me.lock(format!("kill-member-other-{member}").as_str());
        let g = other.acquire().await.unwrap();
        assert!(g.release().await.unwrap());
        drop(_restart);
    }
    assert!(guard.lost_reason().is_none(), "{:?}", guard.lost_reason());
    let members = me.get_members(group.as_str()).await.unwrap();
    assert!(members.contains(&Id::from("survivor")));
    assert!(guard.release().await.unwrap());
    me.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_keeps_the_lock_and_tokens_grow() {
    let Some(_cluster) = cluster().await else {
        return;
    };
    let me = coordinator("holder").await;
    let other = coordinator("next").await;
    let name = format!("kill-leader-{}", uuid::Uuid::new_v4().simple());
    let guard = me.lock(name.as_str()).acquire().await.unwrap();
    let before = guard.fencing_token();

    let leader = leader();
    services::kill_async(leader).await.unwrap();
    let restart = Restart(leader);
    let watched = other.lock(name.as_str());
    let took = works_within("holder()", || watched.holder()).await;
    eprintln!("leader {leader} killed: a client works again after {took:?}");
    // The lease outlives the election: the lock is still held, by its holder.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(guard.lost_reason().is_none(), "{:?}", guard.lost_reason());
    let holder = other.lock(name.as_str()).holder().await.unwrap();
    assert_eq!(holder, Some(Id::from("holder")));
    assert!(other
        .lock(name.as_str())
        .try_acquire()
        .await
        .unwrap()
        .is_none());

    assert!(guard.release().await.unwrap());
    let next = other.lock(name.as_str()).acquire().await.unwrap();
    assert!(
        next.fencing_token() > before,
        "{} after {before}",
        next.fencing_token()
    );
    drop(restart);
    assert!(next.release().await.unwrap());
    me.stop().await.unwrap();
    other.stop().await.unwrap();
}

/// The leases of the keys under `prefix`, from `etcdctl get --prefix`.
fn leases_under(prefix: &str) -> Vec<i64> {
    let endpoints: Vec<&str> = MEMBERS.iter().map(|(_, e)| *e).collect();
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoints.join(","),
            "get",
            prefix,
            "--prefix",
        ])
        .args(["-w", "json"])
        .output()
        .expect("etcdctl runs");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl JSON");
    reply["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| kv["lease"].as_i64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_per_coordinator_however_many_locks() {
    let Some(_cluster) = cluster().await else {
        return;
    };
    let me = coordinator("many-locks").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut guards = Vec::new();
    for n in 0..100 {
        let name = format!("lease-{run}-{n}");
        guards.push(me.lock(name.as_str()).acquire().await.unwrap());
    }
    for n in 0..10 {
        let group = format!("lease-{run}-{n}");
        me.join_group_create(group.as_str(), ()).await.unwrap();
    }
    let mut leases = leases_under(&format!("/tooz/lockslease-{run}"));
    leases.extend(leases_under(&format!("tooz/groups/lease-{run}")));
    // 100 lock keys, and 10 member keys (the group keys live on no lease).
    let on_lease: Vec<i64> = leases.iter().copied().filter(|l| *l != 0).collect();
    assert_eq!(on_lease.len(), 110, "{leases:?}");
    assert!(on_lease.iter().all(|l| *l == on_lease[0]), "{on_lease:?}");
    for guard in guards {
        assert!(guard.release().await.unwrap());
    }
    me.stop().await.unwrap();
}
