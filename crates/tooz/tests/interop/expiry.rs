//! Membership expiry both ways, on the backends where a member lives as long as a key with a
//! TTL (Python's members there have no session: one that vanishes stays listed until its key
//! expires, which both sides must honour).

use std::time::Duration;

use futures::StreamExt;
use tooz::{GroupEvent, Id};

use crate::{cases, hex, Case, Ctx};

pub fn cases() -> Vec<Case> {
    cases![
        python_member_expiry_is_seen_by_rust => [Members, Watch] if ttl_based,
        rust_member_expiry_is_seen_by_python => [Members] if ttl_based,
    ]
}

/// How a TTL-based backend is watched and how long its member key outlives the last beat:
/// the options of the Rust watcher, and how long after a Rust member stops (with
/// `timeout=1`) Python no longer lists it.
fn ttl_backend(url: &str) -> Option<(&'static str, Duration)> {
    match url.split("://").next()? {
        // Python announces nothing: the watch sees the expiry by re-reading, often enough here.
        "redis" => Some(("resync_interval=0.1", Duration::from_millis(1500))),
        // Watches poll anyway. The member key's TTL is ⌈1 s⌉ + 1 s: it lives at most 2 s
        // after the last beat.
        "memcached" => Some(("", Duration::from_millis(2500))),
        _ => None,
    }
}

fn ttl_based(url: &str) -> bool {
    ttl_backend(url).is_some()
}

async fn python_member_expiry_is_seen_by_rust(ctx: Ctx) {
    let (watch_options, _) = ttl_backend(&ctx.url).expect("a TTL-based URL");
    let (group, python) = (ctx.name("group"), ctx.name("python"));
    let watcher_url = match watch_options {
        "" => ctx.url.clone(),
        options => ctx.url_with(options),
    };
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
    let (_, gone_after) = ttl_backend(&ctx.url).expect("a TTL-based URL");
    let group = ctx.name("group");
    let rust = ctx
        .coord_at(&ctx.url_with("timeout=1"), ctx.name("rust"))
        .await;
    rust.join_group_create(group.as_str(), ()).await.unwrap();
    let ours = hex(rust.member_id().as_bytes());
    let listed = ctx.output("members", &[&group]).await;
    assert!(listed.contains(&ours), "alive: {listed}");
    drop(rust); // no stop(): the heartbeat just ends
    tokio::time::sleep(gone_after).await;
    let listed = ctx.output("members", &[&group]).await;
    assert!(!listed.contains(&ours), "listed after it expired: {listed}");
}
