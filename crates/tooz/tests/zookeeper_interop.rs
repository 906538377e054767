//! The zookeeper driver and Python tooz 9 (kazoo) on one ZooKeeper server: locks exclude
//! both ways and hand over in queue order, members and capabilities are read both ways (with
//! msgpack type fidelity), elections are exclusive across the two. Also: digest auth (the
//! nodes' ACL is the one Python tooz gives them).
//!
//! Server: `TOOZ_ZOOKEEPER_URL` (default `zookeeper://127.0.0.1:2181`, started by
//! `scripts/services up zookeeper python-tooz`). Without the server or the Python venv the
//! tests are skipped, except under `CI=true` where that is a failure.
#![cfg(feature = "zookeeper")]

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{python, python_output, python_peer, SignalledPeer};
use tooz::{Capabilities, Coordinator, Id, Value};

fn url() -> String {
    std::env::var("TOOZ_ZOOKEEPER_URL").unwrap_or_else(|_| "zookeeper://127.0.0.1:2181".into())
}

/// A started coordinator, or `None` (skip) when the server is down outside CI.
async fn coord(member: &str) -> Option<Coordinator> {
    let c = Coordinator::connect(&url(), member).await.unwrap();
    match c.start().await {
        Ok(()) => Some(c),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: {} unreachable ({error})", url());
            None
        }
        Err(error) => panic!("ZooKeeper at {} is required under CI: {error}", url()),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn python_holder_blocks_rust_then_hands_over() {
    let Some(py) = python() else { return };
    let Some(rust) = coord("rust").await else {
        return;
    };
    let name = unique("lock");
    let holder =
        SignalledPeer::start(&py, "zookeeper_peer.py", &["hold-lock", &url(), &name]).await;
    let lock = rust.lock(name.as_str());
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "Python holds it"
    );
    assert_eq!(
        lock.holder().await.unwrap(),
        Some(Id::from("python-peer")),
        "kazoo's contender data is the member id"
    );
    let waiting = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire_timeout(Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "acquired while Python holds it");
    holder.go();
    let guard = waiting
        .await
        .unwrap()
        .expect("handed over after Python released");
    assert!(holder.exited_ok().await);
    guard.release().await.unwrap();
    rust.stop().await.unwrap();
}

#[tokio::test]
async fn rust_holder_blocks_python_and_hands_over() {
    let Some(py) = python() else { return };
    let Some(rust) = coord("rust").await else {
        return;
    };
    let name = unique("lock");
    let guard = rust.lock(name.as_str()).acquire().await.unwrap();
    let out = python_output(&py, "zookeeper_peer.py", &["try-lock", &url(), &name]);
    assert_eq!(out.trim(), "busy");
    // A blocked kazoo waiter queues behind the Rust holder and is woken by its release.
    let waiter = python_peer(&py, "zookeeper_peer.py", &["wait-lock", &url(), &name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let queued = rust.lock(name.as_str());
    assert!(queued.try_acquire().await.unwrap().is_none());
    guard.release().await.unwrap();
    let out = tokio::task::spawn_blocking(move || waiter.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "acquired");
    let out = python_output(&py, "zookeeper_peer.py", &["try-lock", &url(), &name]);
    assert_eq!(out.trim(), "acquired");
    rust.stop().await.unwrap();
}

#[tokio::test]
async fn members_and_capabilities_are_read_both_ways() {
    let Some(py) = python() else { return };
    let Some(rust) = coord("rust-member").await else {
        return;
    };
    let group = unique("group");
    let member = SignalledPeer::start(
        &py,
        "zookeeper_peer.py",
        &["join", &url(), &group, "python-member"],
    )
    .await;
    let mut watch = rust.watch_group(group.as_str()).await.unwrap();
    let caps = Capabilities::from(Value::Map(vec![
        ("lang".into(), "rust".into()),
        ("raw".into(), Value::Binary(vec![1])),
        ("f".into(), Value::F64(0.5)),
    ]));
    rust.join_group(group.as_str(), caps).await.unwrap();
    let members = rust
        .get_members_with_capabilities(group.as_str())
        .await
        .unwrap();
    let theirs = &members[&Id::from("python-member")];
    assert_eq!(theirs.get("lang").and_then(|v| v.as_str()), Some("python"));
    assert_eq!(theirs.get("n").and_then(|v| v.as_i64()), Some(1));
    assert_eq!(
        theirs.get("raw"),
        Some(&Value::Binary(vec![0, 0xff])),
        "Python bytes stay bytes"
    );
    let listed = python_output(&py, "zookeeper_peer.py", &["members", &url(), &group]);
    let ours = listed
        .lines()
        .find(|l| l.starts_with(&format!("{} ", hex(b"rust-member"))))
        .unwrap_or_else(|| panic!("rust-member not listed by Python: {listed}"));
    assert!(ours.contains("'lang': 'rust'"), "{ours}");
    assert!(ours.contains("'raw': b'\\x01'"), "{ours}");
    assert!(ours.contains("'f': 0.5"), "{ours}");
    member.go();
    assert!(member.exited_ok().await);
    // The Python member's leave is pushed to the Rust watcher.
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("Python's leave was not seen")
            .unwrap();
        if let tooz::GroupEvent::Left { member, .. } = event {
            assert_eq!(member, Id::from("python-member"));
            break;
        }
    }
    rust.stop().await.unwrap();
}

#[tokio::test]
async fn elections_are_exclusive_across_python_and_rust() {
    let Some(py) = python() else { return };
    let Some(rust) = coord("rust-leader").await else {
        return;
    };
    let group = unique("group");
    rust.create_group(group.as_str()).await.unwrap();
    let leader = SignalledPeer::start(&py, "zookeeper_peer.py", &["lead", &url(), &group]).await;
    assert_eq!(
        rust.get_leader(group.as_str()).await.unwrap(),
        Some(Id::from("python-leader"))
    );
    assert!(
        rust.get_members(group.as_str()).await.unwrap().is_empty(),
        "the election is not a member"
    );
    let campaign = {
        let rust = rust.clone();
        let group = group.clone();
        tokio::spawn(async move { rust.campaign(group.as_str()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!campaign.is_finished(), "two leaders at once");
    leader.go();
    let leadership = tokio::time::timeout(Duration::from_secs(20), campaign)
        .await
        .expect("elected after Python stood down")
        .unwrap()
        .unwrap();
    assert!(leader.exited_ok().await);
    let out = python_output(&py, "zookeeper_peer.py", &["try-lead", &url(), &group]);
    assert_eq!(out.trim(), "not-elected");
    let out = python_output(&py, "zookeeper_peer.py", &["leader", &url(), &group]);
    assert_eq!(out.trim(), hex(b"rust-leader"));
    leadership.resign().await.unwrap();
    let out = python_output(&py, "zookeeper_peer.py", &["try-lead", &url(), &group]);
    assert_eq!(out.trim(), "elected");
    rust.stop().await.unwrap();
}

/// The URL host with `user:password@` (digest auth) and a namespace of its own.
fn url_with(userinfo: &str, namespace: &str) -> String {
    let base = url();
    let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    format!("zookeeper://{userinfo}{rest}?namespace={namespace}")
}

#[tokio::test]
async fn digest_auth_protects_nodes_and_matches_python() {
    let Some(probe) = coord("probe").await else {
        return;
    };
    probe.stop().await.unwrap();
    let namespace = unique("auth");
    let authed_url = url_with("tooz:s3cret@", &namespace);
    let authed = Coordinator::connect(&authed_url, "authed").await.unwrap();
    authed.start().await.unwrap();
    let group = unique("group");
    authed
        .join_group_create(group.as_str(), b"caps")
        .await
        .unwrap();
    let guard = authed.lock("guarded").acquire().await.unwrap();

    // Without the credentials the nodes cannot be read (nor the lock taken).
    let anonymous = Coordinator::connect(&url_with("", &namespace), "anonymous")
        .await
        .unwrap();
    anonymous.start().await.unwrap();
    let denied = anonymous.get_members(group.as_str()).await;
    assert!(
        matches!(denied, Err(tooz::Error::Backend { .. })),
        "{denied:?}"
    );
    anonymous.stop().await.unwrap();

    // Python tooz with the same credentials reads them: the ACL is the same digest id.
    if let Some(py) = python() {
        let listed = python_output(&py, "zookeeper_peer.py", &["members", &authed_url, &group]);
        assert!(listed.contains(&hex(b"authed")), "{listed}");
        let out = python_output(
            &py,
            "zookeeper_peer.py",
            &["try-lock", &authed_url, "guarded"],
        );
        assert_eq!(out.trim(), "busy");
    }
    guard.release().await.unwrap();
    authed.stop().await.unwrap();
}
