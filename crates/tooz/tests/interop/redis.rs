//! Redis-only cases: the exact keys Python tooz reads (membership expiry is in `expiry`).

use std::time::Duration;

use crate::{cases, Case, Ctx};

pub fn cases() -> Vec<Case> {
    cases![
        rust_writes_python_tooz_keys => [Lock, Groups] if direct,
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
