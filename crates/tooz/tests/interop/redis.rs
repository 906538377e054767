//! Redis-only cases: the exact keys Python tooz reads, and membership expiry (Python's
//! members have no session: a member that vanishes stays listed until its beat key expires,
//! which both sides must honour).

use std::time::Duration;

use futures::StreamExt;
use tooz::{GroupEvent, Id};

use crate::{cases, hex, Case, Ctx};

pub fn cases() -> Vec<Case> {
    cases![
        rust_writes_python_tooz_keys => [Lock, Groups] if direct,
        python_member_expiry_is_seen_by_rust => [Members, Watch] if redis,
        rust_member_expiry_is_seen_by_python => [Members] if redis,
    ]
}

fn redis(url: &str) -> bool {
    url.starts_with("redis://")
}

/// A URL of the server itself (not of a Sentinel), which the `redis` crate can open.
fn direct(url: &str) -> bool {
    redis(url) && !url.contains('?')
}

/// The key layout of Python tooz 9, byte for byte, as tooz-rs writes it.
async fn rust_writes_python_tooz_keys(ctx: Ctx) {
    let (lock, group) = (ctx.name("lock"), ctx.name("group"));
    let rust = ctx.coord().await;
    let guard = rust.lock(lock.as_str()).acquire().await.unwrap();
    rust.join_group_create(group.as_str(), ()).await.unwrap();
    let member = rust.member_id().as_str().unwrap().to_string();
    let client = ::redis::Client::open(ctx.url.as_str()).unwrap();
    let mut raw = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let mut query = |args: &[&str]| -> Option<String> {
        let mut cmd = ::redis::cmd(args[0]);
        cmd.arg(&args[1..]);
        cmd.query(&mut raw).unwrap()
    };
    // A 32-hex-digit token, as redis-py's lock holds.
    let token = query(&["GET", &format!("_tooz_{lock}_lock")]).expect("the lock key");
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    let group_key = format!("_tooz_group:{group}");
    let created = query(&["HGET", &group_key, "__created__"]);
    assert_eq!(created.as_deref(), Some("1"));
    let beat = query(&["GET", &format!("_tooz_beats:{member}")]);
    assert_eq!(beat.as_deref(), Some("Not dead!"));
    let listed = query(&["SISMEMBER", "_tooz_groups", &group]);
    assert_eq!(listed.as_deref(), Some("1"));
    guard.release().await.unwrap();
    rust.stop().await.unwrap();
}

async fn python_member_expiry_is_seen_by_rust(ctx: Ctx) {
    let (group, python) = (ctx.name("group"), ctx.name("python"));
    // Python announces nothing: the watch sees the expiry by re-reading, often enough here.
    let watcher_url = ctx.url_with("resync_interval=0.1");
    let rust = ctx.coord_at(&watcher_url, ctx.name("rust")).await;
    rust.create_group(group.as_str()).await.unwrap();
    let mut events = rust.watch_group(group.as_str()).await.unwrap();
    let mut member = ctx.peer_at(
        &ctx.url_with("membership_timeout=1"),
        "join",
        &[&group, &python],
    );
    member.expect("ready").await;
    member.say("vanish").await;
    member.finish().await.unwrap();
    let (group, python) = (Id::from(group.as_str()), Id::from(python.as_str()));
    for want in [
        GroupEvent::Joined {
            group: group.clone(),
            member: python.clone(),
        },
        GroupEvent::Left {
            group: group.clone(),
            member: python.clone(),
        },
    ] {
        let next = tokio::time::timeout(Duration::from_secs(10), events.next()).await;
        assert_eq!(next.expect("no event within 10 s"), Some(want));
    }
    assert!(!rust.get_members(group).await.unwrap().contains(&python));
    rust.stop().await.unwrap();
}

async fn rust_member_expiry_is_seen_by_python(ctx: Ctx) {
    let group = ctx.name("group");
    let rust = ctx
        .coord_at(&ctx.url_with("timeout=1"), ctx.name("rust"))
        .await;
    rust.join_group_create(group.as_str(), ()).await.unwrap();
    let ours = hex(rust.member_id().as_bytes());
    let listed = ctx.output("members", &[&group]).await;
    assert!(listed.contains(&ours), "alive: {listed}");
    drop(rust); // no stop(): the heartbeat just ends
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = ctx.output("members", &[&group]).await;
    assert!(!listed.contains(&ours), "listed after it expired: {listed}");
}
