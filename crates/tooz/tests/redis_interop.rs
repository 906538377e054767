//! The redis driver and Python tooz 9's redis driver on one server: locks exclude both ways,
//! groups and capabilities are read both ways, expiry is seen both ways, leadership is
//! exclusive across the two.
//!
//! Needs the server of `scripts/services up redis` (or `TOOZ_REDIS_URL`) and the Python venv
//! of `scripts/services up python-tooz`; each is skipped when absent, except under `CI=true`.
#![cfg(feature = "redis")]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use support::{python, python_output, SignalledPeer};
use tooz::{Capabilities, Coordinator, GroupEvent, Id, Value};

/// The server under test, if it answers.
fn redis_url() -> Option<String> {
    let url = std::env::var("TOOZ_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).expect("a redis URL");
    match client.get_connection_with_timeout(Duration::from_secs(2)) {
        Ok(_) => Some(url),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("redis is required under CI: {url}: {e} (run scripts/services up redis)")
        }
        Err(e) => {
            eprintln!("skipping: {url}: {e} (scripts/services up redis)");
            None
        }
    }
}

fn both() -> Option<(String, PathBuf)> {
    let url = redis_url()?;
    let py = python()?;
    Some((url, py))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

async fn coord(url: &str, member: &str) -> Coordinator {
    let c = Coordinator::connect(url, member).await.unwrap();
    c.start().await.unwrap();
    c
}

/// Runs the Python peer off the async threads.
async fn peer(py: &Path, args: &[&str]) -> String {
    let (py, args): (PathBuf, Vec<String>) = (
        py.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python_output(&py, "redis_peer.py", &args)
    })
    .await
    .unwrap()
}

async fn next(events: &mut tooz::GroupWatch) -> GroupEvent {
    let next = tokio::time::timeout(Duration::from_secs(10), events.next());
    next.await.expect("no event within 10 s").unwrap()
}

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_holder_blocks_rust_then_hands_over() {
    let Some((url, py)) = both() else { return };
    let name = unique("lock");
    let holder = SignalledPeer::start(&py, "redis_peer.py", &["hold-lock", &url, &name]).await;
    let rust = coord(&url, "rust").await;
    let lock = rust.lock(name.as_str());
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "Python holds it"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_holder_blocks_python() {
    let Some((url, py)) = both() else { return };
    let name = unique("lock");
    let rust = coord(&url, "rust").await;
    let guard = rust.lock(name.as_str()).acquire().await.unwrap();
    // The key is Python tooz 9's, holding a 32-hex-digit token as redis-py's does.
    let token: String = redis::cmd("GET")
        .arg(format!("_tooz_{name}_lock"))
        .query(&mut raw(&url))
        .unwrap();
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(peer(&py, &["try-lock", &url, &name]).await.trim(), "busy");
    assert!(guard.release().await.unwrap());
    assert_eq!(
        peer(&py, &["try-lock", &url, &name]).await.trim(),
        "acquired"
    );
    rust.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_capabilities_are_read_both_ways() {
    let Some((url, py)) = both() else { return };
    let group = unique("group");
    let python_member = unique("python-member");
    peer(&py, &["join", &url, &group, &python_member]).await;

    let rust_member = unique("rust-member");
    let rust = coord(&url, &rust_member).await;
    assert!(rust
        .get_groups()
        .await
        .unwrap()
        .contains(&Id::from(group.as_str())));
    let caps = Capabilities::from(Value::Map(vec![
        ("lang".into(), "rust".into()),
        ("blob".into(), Value::Binary(vec![0, 1])),
    ]));
    rust.join_group(group.as_str(), caps).await.unwrap();

    let members = rust
        .get_members_with_capabilities(group.as_str())
        .await
        .unwrap();
    let theirs = &members[&Id::from(python_member.as_str())];
    assert_eq!(theirs.get("lang"), Some(&Value::from("python")));
    assert_eq!(theirs.get("blob"), Some(&Value::Binary(vec![0, 1])));

    let listed = peer(&py, &["members", &url, &group]).await;
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let ours = listed
        .lines()
        .find(|l| l.starts_with(&hex(&rust_member)))
        .unwrap_or_else(|| panic!("Python does not list the Rust member: {listed}"));
    assert!(
        ours.ends_with("{'lang': 'rust', 'blob': b'\\x00\\x01'}"),
        "{ours}"
    );
    assert!(listed.contains(&hex(&python_member)), "{listed}");

    // Python tooz's layout, byte for byte.
    let mut conn = raw(&url);
    let created: String = redis::cmd("HGET")
        .arg(format!("_tooz_group:{group}"))
        .arg("__created__")
        .query(&mut conn)
        .unwrap();
    assert_eq!(created, "1");
    let beat: String = redis::cmd("GET")
        .arg(format!("_tooz_beats:{rust_member}"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(beat, "Not dead!");
    let in_set: bool = redis::cmd("SISMEMBER")
        .arg("_tooz_groups")
        .arg(&group)
        .query(&mut conn)
        .unwrap();
    assert!(in_set);
    rust.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_member_expiry_is_seen_by_rust() {
    let Some((url, py)) = both() else { return };
    let group = unique("group");
    // Python announces nothing: the watch sees it by re-reading, often enough here to catch
    // a member that lives one second.
    let rust = coord(
        &with_option(&url, "resync_interval=0.1"),
        &unique("rust-watcher"),
    )
    .await;
    rust.create_group(group.as_str()).await.unwrap();
    let mut events = rust.watch_group(group.as_str()).await.unwrap();
    let python_member = unique("python-member");
    let short = with_option(&url, "membership_timeout=1");
    peer(&py, &["join", &short, &group, &python_member]).await;
    let who = Id::from(python_member.as_str());
    let joined = next(&mut events).await;
    assert_eq!(
        joined,
        GroupEvent::Joined {
            group: Id::from(group.as_str()),
            member: who.clone()
        }
    );
    let left = next(&mut events).await;
    assert_eq!(
        left,
        GroupEvent::Left {
            group: Id::from(group.as_str()),
            member: who.clone()
        }
    );
    assert!(!rust
        .get_members(group.as_str())
        .await
        .unwrap()
        .contains(&who));
    rust.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_member_expiry_is_seen_by_python() {
    let Some((url, py)) = both() else { return };
    let group = unique("group");
    let member = unique("rust-member");
    let hex: String = member.bytes().map(|b| format!("{b:02x}")).collect();
    let short = with_option(&url, "timeout=1");
    let rust = coord(&short, &member).await;
    rust.join_group_create(group.as_str(), ()).await.unwrap();
    let listed = peer(&py, &["members", &url, &group]).await;
    assert!(listed.contains(&hex), "alive: {listed}");
    let gone_at = Instant::now();
    drop(rust); // no stop(): the heartbeat just ends
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = peer(&py, &["members", &url, &group]).await;
    assert!(
        !listed.contains(&hex),
        "still listed {:?} after the member went: {listed}",
        gone_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_exclusive_across_the_two() {
    let Some((url, py)) = both() else { return };
    let group = unique("group");
    let leader = SignalledPeer::start(&py, "redis_peer.py", &["lead", &url, &group]).await;

    let rust = coord(&url, &unique("rust")).await;
    let campaign = {
        let (rust, group) = (rust.clone(), group.clone());
        tokio::spawn(async move { rust.campaign(group.as_str()).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign.is_finished(), "two leaders at once");
    // Python records no holder: the leader is held, by someone we cannot name.
    assert!(rust.get_leader(group.as_str()).await.is_err());
    leader.go();
    assert!(leader.exited_ok().await);
    let leadership = tokio::time::timeout(Duration::from_secs(10), campaign)
        .await
        .expect("elected once Python stopped")
        .unwrap()
        .unwrap();
    assert_eq!(
        rust.get_leader(group.as_str()).await.unwrap().as_ref(),
        Some(rust.member_id())
    );
    assert_eq!(
        peer(&py, &["try-lead", &url, &group]).await.trim(),
        "not-leader"
    );
    leadership.resign().await.unwrap();
    assert_eq!(
        peer(&py, &["try-lead", &url, &group]).await.trim(),
        "leader"
    );
    rust.stop().await.unwrap();
}
