//! Redis-specific guarantees of the redis driver, each in a namespace of its own on the server
//! of `scripts/services up redis` (or `TOOZ_REDIS_URL`): atomic joins, fencing epochs,
//! acknowledged acquisitions (`wait_replicas`), pushed `lost()`. Skipped without the server,
//! except under `CI=true`.
#![cfg(feature = "redis")]

use std::time::Duration;

use tooz::{Coordinator, Error, LostReason};

const COUNTER_BITS: u32 = 22;

fn base_url() -> Option<String> {
    let url = std::env::var("TOOZ_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).expect("a redis URL");
    match client.get_connection_with_timeout(Duration::from_secs(2)) {
        Ok(_) => Some(url),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("redis is required under CI: {url}: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {url}: {e} (scripts/services up redis)");
            None
        }
    }
}

/// The server URL with a fresh namespace (and `extra` options); the namespace too.
fn isolated(extra: &str) -> Option<(String, String)> {
    let url = base_url()?;
    let ns = format!("t{}", uuid::Uuid::new_v4().simple());
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut full = format!("{url}{sep}namespace={ns}");
    if !extra.is_empty() {
        full = format!("{full}&{extra}");
    }
    Some((full, ns))
}

fn raw() -> redis::Connection {
    let url = base_url().unwrap();
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

async fn coord(url: &str, member: &str) -> Coordinator {
    let c = Coordinator::connect(url, member).await.unwrap();
    c.start().await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_lose_no_member() {
    let Some((url, _)) = isolated("") else { return };
    let owner = coord(&url, "owner").await;
    owner.create_group("g").await.unwrap();
    let mut coords = Vec::new();
    for i in 0..40 {
        coords.push(coord(&url, &format!("m{i}")).await);
    }
    let joins = coords
        .iter()
        .map(|c| c.join_group("g", format!("caps of {}", c.member_id())));
    for result in futures::future::join_all(joins).await {
        result.unwrap();
    }
    let members = owner.get_members_with_capabilities("g").await.unwrap();
    assert_eq!(members.len(), 40);
    for (member, caps) in &members {
        assert_eq!(
            caps.value().as_str(),
            Some(format!("caps of {member}").as_str())
        );
    }
    for c in coords {
        c.stop().await.unwrap();
    }
    assert!(owner.get_members("g").await.unwrap().is_empty());
    owner.delete_group("g").await.unwrap();
    owner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_master_or_a_full_counter_starts_a_new_epoch() {
    let Some((url, ns)) = isolated("") else {
        return;
    };
    let me = coord(&url, "me").await;
    let lock = me.lock("fenced");
    let first = lock.acquire().await.unwrap().fencing_token();
    let second = {
        let guard = lock.acquire().await.unwrap();
        guard.fencing_token()
    };
    tokio::time::sleep(Duration::from_millis(50)).await; // the dropped guard releases
    assert_eq!(second.0, first.0 + 1, "one epoch, counter + 1");

    // As if the master changed (failover or restart): its run_id differs from the one stored.
    let mut conn = raw();
    let _: () = redis::cmd("HSET")
        .arg(format!("{ns}_epoch"))
        .arg("run_id")
        .arg("another-server")
        .query(&mut conn)
        .unwrap();
    let guard = lock.acquire().await.unwrap();
    let third = guard.fencing_token();
    assert!(third.0 >> COUNTER_BITS > second.0 >> COUNTER_BITS);
    assert!(third > second);
    guard.release().await.unwrap();

    // As if the counter had run out: the epoch moves on, the counter starts again.
    let _: () = redis::cmd("HSET")
        .arg(format!("{ns}_fencing"))
        .arg("fenced")
        .arg((1u64 << COUNTER_BITS) - 1)
        .query(&mut conn)
        .unwrap();
    let fourth = lock.acquire().await.unwrap();
    assert!(fourth.fencing_token() > third);
    assert_eq!(fourth.fencing_token().0 & ((1 << COUNTER_BITS) - 1), 1);
    fourth.release().await.unwrap();
    me.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisitions_wait_for_replicas_when_asked() {
    let Some((url, _)) = isolated("wait_replicas=1&wait_timeout=2") else {
        return;
    };
    let me = coord(&url, "me").await;
    let guard = me.lock("acked").acquire().await.unwrap();
    guard.release().await.unwrap();
    me.stop().await.unwrap();

    // More replicas than exist: the acquisition fails, and leaves the lock free.
    let (url, _) = isolated("wait_replicas=5&wait_timeout=0.2").unwrap();
    let me = coord(&url, "me").await;
    let err = me.lock("acked").try_acquire().await.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err}");
    assert!(err.to_string().contains("replicas"), "{err}");
    let other = coord(&url.replace("wait_replicas=5", "wait_replicas=0"), "other").await;
    let free = other.lock("acked").try_acquire().await.unwrap();
    assert!(free.is_some(), "an unacknowledged acquisition is released");
    other.stop().await.unwrap();
    me.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_and_takeover_are_pushed_to_the_holder() {
    // A long heartbeat period: only the push can tell the holder in time.
    let Some((url, ns)) = isolated("timeout=60") else {
        return;
    };
    let (holder, other) = (coord(&url, "holder").await, coord(&url, "other").await);
    let held = holder.lock("pushed").acquire().await.unwrap();
    assert!(other.lock("pushed").break_lock().await.unwrap());
    let reason = tokio::time::timeout(Duration::from_secs(2), held.lost())
        .await
        .expect("a break is pushed at once");
    assert_eq!(reason, LostReason::Broken);

    // The key expires (here: deleted behind the driver's back) and someone else takes it.
    let held = holder.lock("pushed").acquire().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}_pushed_lock"))
        .query(&mut raw())
        .unwrap();
    let taken = other.lock("pushed").try_acquire().await.unwrap().unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(2), held.lost())
        .await
        .expect("a takeover is pushed at once");
    assert_eq!(reason, LostReason::Expired);
    assert!(taken.fencing_token() > held.fencing_token());
    taken.release().await.unwrap();
    holder.stop().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_info_and_dead_members() {
    let Some((url, ns)) = isolated("") else {
        return;
    };
    let me = coord(&url, "me").await;
    me.join_group_create("g", b"mine").await.unwrap();
    let info = me.get_member_info("g", "me").await.unwrap();
    assert_eq!(info.capabilities.as_bytes(), Some(&b"mine"[..]));
    assert!(info.joined_at.is_some());
    let ttl = info.extra["heartbeat_ttl_ms"].as_i64().unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");

    // A member whose beat key is gone is dropped by readers, as Python tooz does.
    let other = coord(&url, "ghost").await;
    other.join_group("g", ()).await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}_beats:ghost"))
        .query(&mut raw())
        .unwrap();
    assert!(matches!(
        me.get_member_info("g", "ghost").await,
        Err(Error::MemberNotJoined { .. })
    ));
    assert_eq!(me.get_members("g").await.unwrap().len(), 1);
    // The group is deletable once only dead members remain.
    me.leave_group("g").await.unwrap();
    me.delete_group("g").await.unwrap();
    drop(other);
    me.stop().await.unwrap();
}
