//! The mysql driver against the server of `scripts/services` (`TOOZ_MYSQL_URL`, default
//! `mysql://tooz:tooz@127.0.0.1:3306/tooz`): lock-name case as the server compares it, long
//! names hashed, 1,000 locks on one connection, a connection killed from another one (locks
//! reported lost, reconnect, memberships joined again), a break reported `Broken`,
//! passwords never shown.
//!
//! Skipped (saying so) when the server is unreachable, except under `CI=true`.

#![cfg(feature = "mysql")]

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use tooz::{ConnectionState, Coordinator, Error, Id, LostReason};

fn url() -> String {
    std::env::var("TOOZ_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://tooz:tooz@127.0.0.1:3306/tooz".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A plain connection to the same database, for what the tests check behind the driver.
async fn raw() -> Option<mysql_async::Conn> {
    let plain = url();
    // Over TCP, as the driver connects (the socket may be another account of the same user).
    let plain = format!("{}?prefer_socket=false", plain.split('?').next().unwrap());
    match mysql_async::Conn::from_url(plain.as_str()).await {
        Ok(conn) => Some(conn),
        Err(error) => {
            assert!(!support::is_ci(), "{plain} is required under CI: {error}");
            eprintln!("skipped: cannot connect to {plain}: {error}");
            None
        }
    }
}

/// The server's connection id holding named lock `name`.
async fn holder_of(raw: &mut mysql_async::Conn, name: &str) -> Option<u64> {
    raw.exec_first::<Option<u64>, _, _>("SELECT IS_USED_LOCK(?)", (name,))
        .await
        .unwrap()
        .flatten()
}

/// Does the server compare lock names case-insensitively? Asked of it directly.
async fn server_folds_case(raw: &mut mysql_async::Conn) -> bool {
    let probe = unique("CaseProbe");
    let _: Option<i64> = raw
        .exec_first("SELECT GET_LOCK(?, 0)", (&probe,))
        .await
        .unwrap();
    let folded = holder_of(raw, &probe.to_lowercase()).await.is_some();
    raw.exec_drop("DO RELEASE_LOCK(?)", (&probe,))
        .await
        .unwrap();
    folded
}

#[tokio::test]
async fn lock_names_are_compared_as_the_server_compares_them() {
    let Some(mut raw) = raw().await else { return };
    let folds = server_folds_case(&mut raw).await;
    let name = unique("CaseLock");
    let (a, b) = (
        support::started(&url(), "a").await,
        support::started(&url(), "b").await,
    );
    let upper = a.lock(name.as_str()).try_acquire().await.unwrap().unwrap();
    // The same coordinator (the server's locks are re-entrant per connection: the driver's
    // own bookkeeping must fold case as the server does), then another one.
    let same = a.lock(name.to_lowercase()).try_acquire().await.unwrap();
    let same_held = same.is_some();
    if let Some(guard) = same {
        assert!(guard.release().await.unwrap());
    }
    let other = b.lock(name.to_lowercase()).try_acquire().await.unwrap();
    if folds {
        assert!(!same_held && other.is_none(), "MySQL: one lock");
    } else {
        eprintln!("this server (MariaDB) compares lock names exactly: two locks");
        assert!(same_held, "the same coordinator: two locks on this server");
        assert!(
            other.is_some(),
            "another coordinator: two locks on this server"
        );
    }
    assert!(upper.release().await.unwrap());
    if let Some(guard) = other {
        assert!(guard.release().await.unwrap());
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn long_names_are_hashed_not_refused() {
    let Some(mut raw) = raw().await else { return };
    let name = format!("{}-{}", unique("long"), "x".repeat(100));
    let c = support::started(&url(), unique("long")).await;
    let guard = c.lock(name.as_str()).try_acquire().await.unwrap().unwrap();
    // Nobody holds the raw name; the hashed one is held.
    assert!(holder_of(&mut raw, &name[..64]).await.is_none());
    let held: Vec<(String, Option<u64>)> = raw
        .query("SELECT LOCK_NAME, THREAD_ID FROM information_schema.METADATA_LOCK_INFO WHERE LOCK_TYPE = 'User lock' AND LOCK_NAME LIKE '~h~%'")
        .await
        .unwrap_or_default();
    if !held.is_empty() {
        assert!(
            held.iter().all(|(n, _)| n.chars().count() == 64),
            "{held:?}"
        );
    }
    let again = support::started(&url(), unique("long")).await;
    assert!(
        again
            .lock(name.as_str())
            .try_acquire()
            .await
            .unwrap()
            .is_none(),
        "the same name hashes the same in every process"
    );
    assert!(guard.release().await.unwrap());
    assert!(again
        .lock(name.as_str())
        .try_acquire()
        .await
        .unwrap()
        .is_some());
    c.stop().await.unwrap();
    again.stop().await.unwrap();
}

#[tokio::test]
async fn a_thousand_locks_on_one_connection() {
    let Some(mut raw) = raw().await else { return };
    let coord = support::started(&url(), unique("many")).await;
    let prefix = unique("m");
    let mut guards = Vec::new();
    for i in 0..1000 {
        let lock = coord.lock(format!("{prefix}-{i}"));
        guards.push(lock.try_acquire().await.unwrap().expect("free"));
    }
    let mut holders = std::collections::BTreeSet::new();
    for i in (0..1000).step_by(37) {
        holders.insert(
            holder_of(&mut raw, &format!("{prefix}-{i}"))
                .await
                .expect("held"),
        );
    }
    assert_eq!(
        holders.len(),
        1,
        "one connection holds them all: {holders:?}"
    );
    for guard in guards {
        assert!(guard.release().await.unwrap());
    }
    coord.stop().await.unwrap();
}

#[tokio::test]
async fn a_killed_connection_loses_its_locks_and_comes_back() {
    let Some(mut raw) = raw().await else { return };
    let (group, lock) = (unique("group"), unique("lock"));
    let victim = support::started(&url(), "victim").await;
    let other = support::started(&url(), unique("other")).await;
    victim
        .join_group_create(group.as_str(), b"caps")
        .await
        .unwrap();
    let guard = victim.lock(lock.as_str()).acquire().await.unwrap();
    let mut states = victim.connection_states();
    let id = holder_of(&mut raw, &lock).await.expect("held");
    raw.query_drop(format!("KILL CONNECTION {id}"))
        .await
        .unwrap();
    let next = other
        .lock(lock.as_str())
        .acquire_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(next.fencing_token() > guard.fencing_token());
    // The victim learns at its next statement or heartbeat (timeout / 4).
    let reason = tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("lost() fires");
    assert_eq!(reason, LostReason::SessionLost);
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
    let bad = "mysql://tooz:not-the-password-42@127.0.0.1:3306/tooz?timeout=2";
    let coord = Coordinator::connect(bad, "m").await.unwrap();
    assert!(!format!("{coord:?}").contains("not-the-password-42"));
    let error = coord.start().await.unwrap_err();
    assert!(matches!(error, Error::Connection(_)), "{error:?}");
    assert!(
        !error.to_string().contains("not-the-password-42"),
        "{error}"
    );
    let error = Coordinator::connect(&format!("{bad}&ssl_ca=/x"), "m")
        .await
        .unwrap_err();
    assert!(
        !error.to_string().contains("not-the-password-42"),
        "{error}"
    );
}

/// Python tooz's `unix_socket` option. Uses the socket of `scripts/services`
/// (`TOOZ_MYSQL_SOCKET`, default `/tmp/tooz-services/mariadb/mysqld.sock`); skipped when there
/// is none.
#[tokio::test]
async fn connects_over_a_unix_socket() {
    let socket = std::env::var("TOOZ_MYSQL_SOCKET")
        .unwrap_or_else(|_| "/tmp/tooz-services/mariadb/mysqld.sock".into());
    if !std::path::Path::new(&socket).exists() {
        assert!(!support::is_ci(), "no MySQL socket at {socket} under CI");
        eprintln!("skipped: no MySQL socket at {socket}");
        return;
    }
    let socket_url = format!("mysql://tooz:tooz@localhost/tooz?unix_socket={socket}");
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
