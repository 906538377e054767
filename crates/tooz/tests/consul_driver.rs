//! The Consul driver against the server of `scripts/services` (`TOOZ_CONSUL_URL`, default
//! `consul://127.0.0.1:8500`): what only Consul does, seen from outside through Consul's own
//! HTTP API — the keys Python tooz 8.1 reads, a session Consul ends under the coordinator,
//! the lock-delay. Skipped (saying so) when the server is not running, except under
//! `CI=true`.

#![cfg(feature = "consul")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tooz::{ConnectionState, LostReason};

fn base() -> String {
    std::env::var("TOOZ_CONSUL_URL").unwrap_or_else(|_| "consul://127.0.0.1:8500".into())
}

/// `host:port` of the server.
fn address() -> String {
    let base = base();
    let rest = base.trim_start_matches("consul://");
    rest.split(['?', '/']).next().unwrap_or(rest).to_string()
}

/// Whether the server answers; panics under CI when it does not.
fn server_up() -> bool {
    let up = TcpStream::connect(address()).is_ok();
    if !up {
        assert!(!support::is_ci(), "no Consul at {}", address());
        eprintln!(
            "skipped: no Consul at {} (scripts/services up consul)",
            address()
        );
    }
    up
}

/// One request to Consul's HTTP API, written by hand: the status and the body.
fn http(method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address()).expect("connect to Consul");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        address()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The JSON of a KV read of `key` (raw Consul entries).
fn kv(key: &str) -> Option<serde_json::Value> {
    let (status, body) = http("GET", &format!("/v1/kv/{key}"));
    (status == 200).then(|| serde_json::from_str(&body).expect("JSON"))
}

/// The ids of the sessions named `name`.
fn sessions_named(name: &str) -> Vec<String> {
    let (_, body) = http("GET", "/v1/session/list");
    let list: serde_json::Value = serde_json::from_str(&body).expect("session list");
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter(|s| s["Name"] == name)
                .filter_map(|s| s["ID"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn locks_and_members_use_python_toozs_keys() {
    if !server_up() {
        return;
    }
    let member = unique("keys");
    let c = support::started(&format!("{}?namespace=tooz", base()), member.as_str()).await;
    let (lock, group) = (unique("lock"), unique("group"));
    let guard = c.lock(lock.as_str()).acquire().await.expect("acquire");
    let entry = kv(&format!("tooz/locks/{lock}")).expect("the lock key");
    let session = entry[0]["Session"].as_str().expect("held by a session");
    assert_eq!(sessions_named(&member), vec![session.to_string()]);
    // The fencing token carries the acquiring write's index in its low bits.
    let index = entry[0]["ModifyIndex"].as_u64().expect("index");
    assert_eq!(guard.fencing_token().0 & ((1 << 36) - 1), index);
    assert!(guard.release().await.expect("release"));
    assert!(
        kv(&format!("tooz/locks/{lock}")).is_none(),
        "released: gone"
    );

    c.join_group_create(group.as_str(), ()).await.expect("join");
    assert!(kv(&format!("tooz/groups/{group}/")).is_some(), "group key");
    let entry = kv(&format!("tooz/groups/{group}/{member}")).expect("member key");
    assert_eq!(
        entry[0]["Session"].as_str(),
        Some(session),
        "bound to the session"
    );
    c.leave_group(group.as_str()).await.expect("leave");
    c.delete_group(group.as_str()).await.expect("delete");
    c.stop().await.expect("stop");
    assert!(sessions_named(&member).is_empty(), "stop ends the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_consul_ends_is_replaced_and_groups_joined_again() {
    if !server_up() {
        return;
    }
    let member = unique("phoenix");
    let url = format!("{}?ttl=10&lock_delay=0", base());
    let c = support::started(&url, member.as_str()).await;
    let observer = support::started(&url, unique("observer").as_str()).await;
    let (lock, group) = (unique("lock"), unique("group"));
    c.join_group_create(group.as_str(), ()).await.expect("join");
    let guard = c.lock(lock.as_str()).acquire().await.expect("acquire");
    let mut states = c.connection_states();

    let old = sessions_named(&member);
    assert_eq!(old.len(), 1, "one session per coordinator");
    let (status, _) = http("PUT", &format!("/v1/session/destroy/{}", old[0]));
    assert_eq!(status, 200);
    let ended = Instant::now();

    // The next renewal (every TTL / 4) is answered 404: Lost, every lock lost.
    let reason = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost() within a heartbeat period");
    assert_eq!(reason, LostReason::SessionLost);
    let lost_after = ended.elapsed();
    let saw_lost = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if *states.borrow_and_update() == ConnectionState::Lost {
                return;
            }
            if states.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        saw_lost.is_ok() || c.connection_state() == ConnectionState::Connected,
        "Lost reported"
    );

    // A new session, and the membership back, with no restart.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let members = observer.get_members(group.as_str()).await.expect("members");
        if members.contains(c.member_id()) {
            break;
        }
        assert!(Instant::now() < end, "the membership never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new = sessions_named(&member);
    assert_eq!(new.len(), 1);
    assert_ne!(new, old, "a new session");
    let again = c
        .lock(lock.as_str())
        .try_acquire()
        .await
        .expect("try")
        .expect("the lock is free again");
    eprintln!("lost() {lost_after:?} after Consul ended the session");
    assert!(again.release().await.expect("release"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_delay_holds_a_dead_sessions_lock_back() {
    if !server_up() {
        return;
    }
    let holder = unique("holder");
    let delay = Duration::from_secs(2);
    let c = support::started(&format!("{}?lock_delay=2", base()), holder.as_str()).await;
    let other = support::started(&base(), unique("other").as_str()).await;
    let lock = unique("lock");
    let _guard = c.lock(lock.as_str()).acquire().await.expect("acquire");
    let session = sessions_named(&holder).pop().expect("the holder's session");
    http("PUT", &format!("/v1/session/destroy/{session}"));
    let ended = Instant::now();
    let taken = tokio::time::timeout(Duration::from_secs(10), other.lock(lock.as_str()).acquire())
        .await
        .expect("taken within 10 s")
        .expect("acquire");
    let after = ended.elapsed();
    eprintln!("taken {after:?} after the holder's session ended (lock-delay {delay:?})");
    assert!(after >= delay - Duration::from_millis(100), "{after:?}");
    assert!(taken.release().await.expect("release"));
    // A release starts no lock-delay: the lock is free again at once.
    let again = other
        .lock(lock.as_str())
        .try_acquire()
        .await
        .expect("try")
        .expect("free at once after a release");
    assert!(again.release().await.expect("release"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_waiter_waits_for_shared_holders_and_back() {
    if !server_up() {
        return;
    }
    let (a, b) = (
        support::started(&base(), unique("reader").as_str()).await,
        support::started(&base(), unique("writer").as_str()).await,
    );
    let lock = unique("lock");
    let reader = a
        .lock(lock.as_str())
        .acquire_shared()
        .await
        .expect("shared");
    let writer_lock = b.lock(lock.as_str());
    let waiting = writer_lock.acquire();
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "an exclusive hold while a shared one is held"
    );
    let reader_token = reader.fencing_token();
    let released = Instant::now();
    assert!(reader.release().await.expect("release"));
    let writer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the writer is woken")
        .expect("acquire");
    eprintln!("writer in {:?} after the reader left", released.elapsed());
    assert!(writer.fencing_token() > reader_token);
    // And a shared waiter waits for the exclusive holder.
    let reader_lock = a.lock(lock.as_str());
    let waiting = reader_lock.acquire_shared();
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err()
    );
    assert!(writer.release().await.expect("release"));
    let reader = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the reader is woken")
        .expect("acquire shared");
    assert!(reader.release().await.expect("release"));
}
