//! The file driver and Python tooz 9's file driver on one directory: locks exclude both ways,
//! members joined on either side are listed by the other.

mod support;

use std::time::Duration;

use support::{python, python_output, SignalledPeer, TempDir};
use tooz::{Coordinator, Id};

async fn coord(url: &str, member: &str) -> Coordinator {
    let c = Coordinator::connect(url, member).await.unwrap();
    c.start().await.unwrap();
    c
}

#[tokio::test]
async fn python_holder_blocks_rust_then_hands_over() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("tooz-interop-lock");
    let holder = SignalledPeer::start(
        &py,
        "file_peer.py",
        &["hold-lock", &dir.url(), "shared-lock"],
    )
    .await;
    let rust = coord(&dir.url(), "rust").await;
    let lock = rust.lock("shared-lock");
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "Python holds it"
    );
    let waiting = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire_timeout(Duration::from_secs(20)).await })
    };
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
async fn rust_holder_blocks_python() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("tooz-interop-lock2");
    let rust = coord(&dir.url(), "rust").await;
    let guard = rust.lock("shared-lock").acquire().await.unwrap();
    let out = python_output(
        &py,
        "file_peer.py",
        &["try-lock", &dir.url(), "shared-lock"],
    );
    assert_eq!(out.trim(), "busy");
    guard.release().await.unwrap();
    let out = python_output(
        &py,
        "file_peer.py",
        &["try-lock", &dir.url(), "shared-lock"],
    );
    assert_eq!(out.trim(), "acquired");
    rust.stop().await.unwrap();
}

#[tokio::test]
async fn members_are_seen_both_ways() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("tooz-interop-group");
    python_output(
        &py,
        "file_peer.py",
        &["join", &dir.url(), "workers", "python-member"],
    );
    let rust = coord(&dir.url(), "rust-member").await;
    assert!(rust
        .get_groups()
        .await
        .unwrap()
        .contains(&Id::from("workers")));
    rust.join_group("workers", b"rust caps").await.unwrap();
    let members = rust.get_members_with_capabilities("workers").await.unwrap();
    let caps = &members[&Id::from("python-member")];
    assert_eq!(caps.get("lang").and_then(|v| v.as_str()), Some("python"));
    let listed = python_output(&py, "file_peer.py", &["members", &dir.url(), "workers"]);
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let listed: Vec<&str> = listed.lines().collect();
    assert!(listed.contains(&hex("rust-member").as_str()), "{listed:?}");
    assert!(
        listed.contains(&hex("python-member").as_str()),
        "{listed:?}"
    );
    rust.stop().await.unwrap();
}
