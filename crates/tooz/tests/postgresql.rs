//! The postgresql driver against the server of `scripts/services` (`TOOZ_POSTGRESQL_URL`,
//! default `postgresql://tooz:tooz@127.0.0.1:5432/tooz`): 64-bit keys where Python tooz's
//! 2-byte keys collide, 1,000 locks on one database session, a session killed from another
//! connection (locks reported lost, reconnect, memberships joined again), passwords never
//! shown.
//!
//! Skipped (saying so) when the server is unreachable, except under `CI=true`.

#![cfg(feature = "postgresql")]

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use md5::{Digest, Md5};
use tooz::{ConnectionState, Coordinator, Error, Id, LostReason};

fn url() -> String {
    std::env::var("TOOZ_POSTGRESQL_URL")
        .unwrap_or_else(|_| "postgresql://tooz:tooz@127.0.0.1:5432/tooz".into())
}

fn with(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A plain client of the same database, for what the tests check behind the driver's back.
async fn raw() -> Option<tokio_postgres::Client> {
    let plain = url();
    let plain = plain.split('?').next().unwrap();
    match tokio_postgres::connect(plain, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(error) => {
            assert!(!support::is_ci(), "{plain} is required under CI: {error}");
            eprintln!("skipped: cannot connect to {plain}: {error}");
            None
        }
    }
}

/// Two names whose Python tooz keys (`md5[0]`, `md5[1]`) are the same.
fn python_collision() -> (String, String) {
    let base = unique("collide");
    let mut seen: HashMap<[u8; 2], String> = HashMap::new();
    for i in 0.. {
        let name = format!("{base}-{i}");
        let digest = Md5::digest(name.as_bytes());
        if let Some(first) = seen.insert([digest[0], digest[1]], name.clone()) {
            return (first, name);
        }
    }
    unreachable!()
}

#[tokio::test]
async fn native_keys_do_not_collide_where_python_keys_do() {
    if raw().await.is_none() {
        return;
    }
    let (one, two) = python_collision();
    // Python's derivation: two unrelated names are one lock.
    let python = with(&url(), "lock_keys=python");
    let (a, b) = (
        support::started(&python, "a").await,
        support::started(&python, "b").await,
    );
    let held = a.lock(one.as_str()).try_acquire().await.unwrap().unwrap();
    assert!(
        b.lock(two.as_str()).try_acquire().await.unwrap().is_none(),
        "{one} and {two} share a Python key"
    );
    assert!(held.release().await.unwrap());
    // Ours: they are two locks.
    let (c, d) = (
        support::started(&url(), "c").await,
        support::started(&url(), "d").await,
    );
    let first = c.lock(one.as_str()).try_acquire().await.unwrap().unwrap();
    let second = d.lock(two.as_str()).try_acquire().await.unwrap();
    assert!(
        second.is_some(),
        "{one} and {two} are two locks with 64-bit keys"
    );
    assert!(first.release().await.unwrap());
    assert!(second.unwrap().release().await.unwrap());
    for coord in [a, b, c, d] {
        coord.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_thousand_locks_on_one_session() {
    let Some(raw) = raw().await else { return };
    let coord = support::started(&url(), unique("many")).await;
    let prefix = unique("many");
    let mut guards = Vec::new();
    for i in 0..1000 {
        let lock = coord.lock(format!("{prefix}-{i}"));
        guards.push(lock.try_acquire().await.unwrap().expect("free"));
    }
    // Every one of them is held by the same server process: one session.
    let names: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect();
    let row = raw
        .query_one(
            "SELECT count(DISTINCT t.pid), count(*) FROM tooz_locks t
             WHERE t.name = ANY($1) AND EXISTS (SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted AND l.pid = t.pid)",
            &[&names],
        )
        .await
        .unwrap();
    let (sessions, held): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((sessions, held), (1, 1000));
    // The session connection and the listening connection: two in all.
    let pid: i32 = raw
        .query_one("SELECT pid FROM tooz_locks WHERE name = $1", &[&names[0]])
        .await
        .unwrap()
        .get(0);
    let row = raw
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a, pg_stat_activity me
             WHERE me.pid = $1 AND a.application_name = 'tooz-rs'
               AND a.client_port = me.client_port",
            &[&pid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the session is one connection");
    for guard in guards {
        assert!(guard.release().await.unwrap());
    }
    coord.stop().await.unwrap();
}

#[tokio::test]
async fn a_killed_session_loses_its_locks_and_comes_back() {
    let Some(raw) = raw().await else { return };
    let (group, lock) = (unique("group"), unique("lock"));
    let victim = support::started(&url(), "victim").await;
    let other = support::started(&url(), unique("other")).await;
    victim
        .join_group_create(group.as_str(), b"caps")
        .await
        .unwrap();
    let guard = victim.lock(lock.as_str()).acquire().await.unwrap();
    let mut states = victim.connection_states();
    let pid: i32 = raw
        .query_one(
            "SELECT pid FROM tooz_locks WHERE name = $1",
            &[&lock.as_bytes()],
        )
        .await
        .unwrap()
        .get(0);
    let killed: bool = raw
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let reason = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost() fires");
    assert_eq!(reason, LostReason::SessionLost);
    // The lock is free for another at once, with a larger token.
    let next = other
        .lock(lock.as_str())
        .acquire_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(next.fencing_token() > guard.fencing_token());
    // Lost, then connected again with the membership back.
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            seen.push(*states.borrow_and_update());
            if seen.contains(&ConnectionState::Lost)
                && seen.last() == Some(&ConnectionState::Connected)
            {
                return;
            }
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("states: {seen:?}"));
    let members = other.get_members(group.as_str()).await.unwrap();
    assert!(members.contains(&Id::from("victim")), "{members:?}");
    assert!(
        !guard.release().await.unwrap(),
        "a lost lock's release says false"
    );
    assert!(next.release().await.unwrap());
    victim.stop().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test]
async fn passwords_are_never_shown() {
    if raw().await.is_none() {
        return;
    }
    let bad = "postgresql://tooz:not-the-password-42@127.0.0.1:5432/tooz?timeout=2";
    let coord = Coordinator::connect(bad, "m").await.unwrap();
    assert!(!format!("{coord:?}").contains("not-the-password-42"));
    let error = coord.start().await.unwrap_err();
    assert!(matches!(error, Error::Connection(_)), "{error:?}");
    assert!(
        !error.to_string().contains("not-the-password-42"),
        "{error}"
    );
    let error = Coordinator::connect(&format!("{bad}&lock_keys=nope"), "m")
        .await
        .unwrap_err();
    assert!(
        !error.to_string().contains("not-the-password-42"),
        "{error}"
    );
}

/// Python tooz's form of a unix-socket URL: `host=<socket directory>` overrides the URL's
/// host. Uses the socket of `scripts/services` (`TOOZ_POSTGRESQL_SOCKET_DIR`, default
/// `/tmp/tooz-services/postgresql`); skipped when there is none.
#[tokio::test]
async fn connects_over_a_unix_socket() {
    let dir = std::env::var("TOOZ_POSTGRESQL_SOCKET_DIR")
        .unwrap_or_else(|_| "/tmp/tooz-services/postgresql".into());
    if !std::path::Path::new(&dir).join(".s.PGSQL.5432").exists() {
        assert!(!support::is_ci(), "no PostgreSQL socket in {dir} under CI");
        eprintln!("skipped: no PostgreSQL socket in {dir}");
        return;
    }
    let socket_url = format!("postgresql://tooz:tooz@localhost/tooz?host={dir}&port=5432");
    let coord = support::started(&socket_url, unique("socket")).await;
    let lock = unique("lock");
    let guard = coord.lock(lock.as_str()).try_acquire().await.unwrap();
    assert!(guard.is_some());
    // The same lock over TCP: one server, one lock.
    let tcp = support::started(&url(), unique("tcp")).await;
    assert!(tcp
        .lock(lock.as_str())
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    assert!(guard.unwrap().release().await.unwrap());
    coord.stop().await.unwrap();
    tcp.stop().await.unwrap();
}
