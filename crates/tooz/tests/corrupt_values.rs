//! Corrupt values planted where the network drivers read them (by a Python client, as any
//! other writer of the shared server could) give typed errors, never a panic or a hang:
//! garbage, truncated msgpack and trailing bytes as a member's capabilities, and garbage in
//! the Redis fencing counter, holder record and lock key. Needs the servers of
//! `scripts/services` and Python tooz's venv; without them the tests are skipped, except
//! under `CI=true`.
#![cfg(any(feature = "redis", feature = "zookeeper"))]

mod support;

use std::time::Duration;

use tooz::{Coordinator, Error};

/// Values that are not one msgpack value: noise, a map cut short, a value with bytes after it.
const BAD_CAPABILITIES: [&str; 3] = ["ffffff", "82a161", "c0c0"];

fn plant(args: &[&str]) -> bool {
    let Some(python) = support::python() else {
        return false;
    };
    support::python_output(&python, "plant.py", args);
    true
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// A started coordinator on `url`; `None` (skip) when the server is not there, outside CI.
async fn started(url: &str) -> Option<Coordinator> {
    let coord = Coordinator::connect(url, "reader").await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), coord.start()).await {
        Ok(Ok(())) => Some(coord),
        outcome if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: {url} is not usable: {outcome:?}");
            None
        }
        outcome => panic!("{url} is required under CI: {outcome:?}"),
    }
}

/// Every read of `group`, whose member `bad` has corrupt capabilities, answers or fails
/// with a serialization error.
async fn assert_typed_reads(coord: &Coordinator, group: &str) {
    let members = coord.get_members(group).await.unwrap();
    assert!(members.contains(&"bad".into()), "{members:?}");
    for outcome in [
        coord
            .get_member_capabilities(group, "bad")
            .await
            .map(|_| ()),
        coord.get_members_with_capabilities(group).await.map(|_| ()),
        coord.get_member_info(group, "bad").await.map(|_| ()),
    ] {
        match outcome {
            Err(Error::Serialization(_)) => {}
            other => panic!("expected a serialization error, got {other:?}"),
        }
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_corrupt_values() {
    let Some(coord) = started("redis://127.0.0.1:6379").await else {
        return;
    };
    for hex in BAD_CAPABILITIES {
        let group = unique("corrupt");
        coord.create_group(group.as_str()).await.unwrap();
        if !plant(&[
            "redis",
            "127.0.0.1",
            "6379",
            "hset",
            &format!("_tooz_group:{group}"),
            "bad",
            hex,
        ]) {
            return;
        }
        // Alive, as Python tooz marks its members.
        let beat = "4e6f74206465616421"; // "Not dead!"
        plant(&["redis", "127.0.0.1", "6379", "set", "_tooz_beats:bad", beat]);
        assert_typed_reads(&coord, &group).await;
    }

    // The fencing counter, the holder record and the lock key itself hold garbage.
    let lock = unique("corrupt-lock");
    plant(&[
        "redis",
        "127.0.0.1",
        "6379",
        "hset",
        "_tooz_fencing",
        &lock,
        "6e6f742061206e756d626572",
    ]);
    plant(&[
        "redis",
        "127.0.0.1",
        "6379",
        "hset",
        "_tooz_holders",
        &lock,
        "ff00ff",
    ]);
    match coord.lock(lock.as_str()).try_acquire().await {
        Ok(_) | Err(Error::Backend { .. }) | Err(Error::Serialization(_)) => {}
        Err(other) => panic!("untyped failure: {other:?}"),
    }
    match coord.lock(lock.as_str()).holder().await {
        Ok(_) | Err(Error::Backend { .. }) | Err(Error::Serialization(_)) => {}
        Err(other) => panic!("untyped failure: {other:?}"),
    }
    let squatted = unique("squatted-lock");
    plant(&[
        "redis",
        "127.0.0.1",
        "6379",
        "set",
        &format!("_tooz_{squatted}_lock"),
        "00ff",
    ]);
    // Garbage in the lock key is a holder that is not us: the lock is busy, not broken.
    let attempt = coord.lock(squatted.as_str()).try_acquire().await.unwrap();
    assert!(attempt.is_none());
    coord.stop().await.unwrap();
}

#[cfg(feature = "zookeeper")]
#[tokio::test]
async fn zookeeper_corrupt_values() {
    let Some(coord) = started("zookeeper://127.0.0.1:2181").await else {
        return;
    };
    for hex in BAD_CAPABILITIES {
        let group = unique("corrupt");
        coord.create_group(group.as_str()).await.unwrap();
        if !plant(&[
            "zookeeper",
            "127.0.0.1:2181",
            &format!("/tooz/{group}/bad"),
            hex,
        ]) {
            return;
        }
        assert_typed_reads(&coord, &group).await;
    }
    coord.stop().await.unwrap();
}
