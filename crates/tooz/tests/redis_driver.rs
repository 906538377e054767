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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let Some((url, _)) = isolated("") else { return };
    let holder = coord(&url, "holder").await;
    let held = holder.lock("fifo").acquire().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let c = coord(&url, &format!("w{i}")).await;
        let lock = c.lock("fifo");
        let tx = tx.clone();
        waiters.push(tokio::spawn(async move {
            let guard = lock.acquire_timeout(Duration::from_secs(10)).await.unwrap();
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await.unwrap();
            c.stop().await.unwrap();
        }));
        // Each one has taken its place before the next arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    held.release().await.unwrap();
    // The releasing client goes to the back: a try while others wait is refused.
    assert!(holder.lock("fifo").try_acquire().await.unwrap().is_none());
    let again = holder
        .lock("fifo")
        .acquire_timeout(Duration::from_secs(10))
        .await
        .unwrap();
    let mut order = Vec::new();
    while let Ok(i) = rx.try_recv() {
        order.push(i);
    }
    assert_eq!(order, [0, 1, 2]);
    again.release().await.unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    holder.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_waiter_holds_up_a_free_lock_only_until_its_place_expires() {
    let Some((url, ns)) = isolated("") else {
        return;
    };
    // A waiter that queued and died: its place expires 300 ms from now (server clock).
    let mut raw = raw();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut raw).unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg(format!("{ns}_rs:queue:crash:order"))
        .arg(secs * 1_000_000 + micros)
        .arg("dead-waiter")
        .ignore()
        .cmd("ZADD")
        .arg(format!("{ns}_rs:queue:crash:lease"))
        .arg(now_ms + 300)
        .arg("dead-waiter")
        .ignore()
        .query(&mut raw)
        .unwrap();
    let c = coord(&url, "survivor").await;
    assert!(c.lock("crash").try_acquire().await.unwrap().is_none());
    let start = std::time::Instant::now();
    let guard = c
        .lock("crash")
        .acquire_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    guard.release().await.unwrap();
    // A waiter that gives up leaves the queue at once: the lock is free for a try.
    let holder = coord(&url, "holder").await;
    let held = holder.lock("crash").acquire().await.unwrap();
    let timed_out = c
        .lock("crash")
        .acquire_timeout(Duration::from_millis(200))
        .await;
    assert!(timed_out.is_err());
    held.release().await.unwrap();
    assert!(holder.lock("crash").try_acquire().await.unwrap().is_some());
    let left: i64 = redis::cmd("ZCARD")
        .arg(format!("{ns}_rs:queue:crash:order"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(left, 0);
    c.stop().await.unwrap();
    holder.stop().await.unwrap();
}

/// 10,000 members written directly in Python tooz's layout (group hash field with msgpack
/// capabilities, beat key), then listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_ten_thousand_members() {
    const MEMBERS: usize = 10_000;
    let Some((url, ns)) = isolated("") else {
        return;
    };
    let mut raw = raw();
    let group_key = format!("{ns}_group:big");
    let mut pipe = redis::pipe();
    pipe.cmd("SADD")
        .arg(format!("{ns}_groups"))
        .arg("big")
        .ignore();
    pipe.cmd("HSET")
        .arg(&group_key)
        .arg("__created__")
        .arg("1")
        .ignore();
    for i in 0..MEMBERS {
        pipe.cmd("HSET")
            .arg(&group_key)
            .arg(format!("member-{i:05}"))
            .arg(&[0xc0u8][..])
            .ignore();
        pipe.cmd("PSETEX")
            .arg(format!("{ns}_beats:member-{i:05}"))
            .arg(60_000)
            .arg("Not dead!")
            .ignore();
    }
    let _: () = pipe.query(&mut raw).unwrap();
    let c = coord(&url, "reader").await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let members = c.get_members("big").await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(members.len(), MEMBERS);
    }
    let with_caps = c.get_members_with_capabilities("big").await.unwrap();
    assert_eq!(with_caps.len(), MEMBERS);
    assert!(with_caps.values().all(|caps| caps.value().is_nil()));
    samples.sort();
    eprintln!("get_members of {MEMBERS}: median {:?}", samples[2]);
    assert!(samples[2] < Duration::from_secs(2), "{samples:?}");
    // Half the beats gone: those members are dropped (and the rest kept) in one read.
    let mut pipe = redis::pipe();
    for i in (0..MEMBERS).step_by(2) {
        pipe.cmd("DEL")
            .arg(format!("{ns}_beats:member-{i:05}"))
            .ignore();
    }
    let _: () = pipe.query(&mut raw).unwrap();
    assert_eq!(c.get_members("big").await.unwrap().len(), MEMBERS / 2);
    c.stop().await.unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(&group_key).ignore();
    pipe.cmd("DEL").arg(format!("{ns}_groups")).ignore();
    for i in (1..MEMBERS).step_by(2) {
        pipe.cmd("DEL")
            .arg(format!("{ns}_beats:member-{i:05}"))
            .ignore();
    }
    let _: () = pipe.query(&mut raw).unwrap();
}
