//! The zookeeper driver over TLS, against the `zk-tls` server of `scripts/services` (started
//! here with `scripts/services up zk-tls` and left running): a standalone ZooKeeper whose
//! secure port requires a client certificate from the test CA.
//!
//! * with the CA and a client certificate, locks, fencing and groups work;
//! * without a client certificate, with a CA that did not sign the server's certificate, or
//!   in clear text against the TLS port, connecting fails with a connection error within the
//!   session timeout (no hang, no silent fallback to clear text);
//! * certificate and key files that are missing or not PEM are refused when the URL is read;
//! * Python tooz (kazoo) over TLS and Rust over TLS exclude each other on one lock.
//!
//! Without ZooKeeper installed the tests are skipped, except under `CI=true`.
#![cfg(feature = "zookeeper-tls")]

mod support;

use std::time::{Duration, Instant};

use tooz::{Capabilities, Coordinator, Error};
use tooz_testkit::services;

/// Longest a refused connection may take (the URLs ask for a 2 s session timeout).
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

/// The directory of the server's certificates and the secure port's URL; `None` = skip.
fn server() -> Option<(String, String)> {
    let up = services::run(&["up", "zk-tls"]).and_then(|_| services::run(&["urls", "zk-tls"]));
    let url = match up {
        Ok(out) => out
            .lines()
            .find_map(|l| l.strip_prefix("zk-tls ").map(str::to_owned))
            .expect("scripts/services urls names zk-tls"),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: cannot start zk-tls: {error}");
            return None;
        }
        Err(error) => panic!("zk-tls is required under CI: {error}"),
    };
    let services_dir =
        std::env::var("TOOZ_SERVICES_DIR").unwrap_or_else(|_| "/tmp/tooz-services".into());
    Some((format!("{services_dir}/zk-tls/tls"), url))
}

/// A URL for the TLS port with these query options.
fn url_with(query: &str) -> String {
    format!("zookeeper://localhost:2182?timeout=2&{query}")
}

/// Connects and starts; the error (and how long it took) if that fails.
async fn start(url: &str, member: &str) -> Result<Coordinator, (Error, Duration)> {
    let began = Instant::now();
    let coord = Coordinator::connect(url, member)
        .await
        .map_err(|e| (e, began.elapsed()))?;
    match coord.start().await {
        Ok(()) => Ok(coord),
        Err(error) => Err((error, began.elapsed())),
    }
}

#[tokio::test]
async fn locks_and_groups_work_over_tls() {
    let Some((_, url)) = server() else { return };
    let a = start(&url, "tls-a").await.expect("TLS connection");
    let b = start(&url, "tls-b").await.expect("TLS connection");

    let guard = a.lock("tls-lock").acquire().await.unwrap();
    assert!(b.lock("tls-lock").try_acquire().await.unwrap().is_none());
    let first = guard.fencing_token();
    guard.release().await.unwrap();
    let again = b.lock("tls-lock").acquire().await.unwrap();
    assert!(again.fencing_token() > first);
    again.release().await.unwrap();

    let caps = Capabilities::from("zone=tls");
    a.join_group_create("tls-group", caps.clone())
        .await
        .unwrap();
    assert!(b
        .get_members("tls-group")
        .await
        .unwrap()
        .contains(a.member_id()));
    assert_eq!(
        b.get_member_capabilities("tls-group", a.member_id())
            .await
            .unwrap(),
        caps
    );
    a.leave_group("tls-group").await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Asserts that `url` is refused with a connection error, in bounded time.
async fn assert_refused(url: &str) {
    match start(url, "tls-refused").await {
        Ok(coord) => {
            let _ = coord.stop().await;
            panic!("{url} connected although it must be refused");
        }
        Err((error, took)) => {
            assert!(matches!(error, Error::Connection(_)), "{url}: {error:?}");
            assert!(took < REFUSAL_BOUND, "{url}: refusal took {took:?}");
        }
    }
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let Some((dir, _)) = server() else { return };
    assert_refused(&url_with(&format!("use_ssl=true&ca={dir}/ca.pem"))).await;
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused() {
    let Some((dir, _)) = server() else { return };
    // The client's own certificate as the only trust anchor: the server's does not chain to it.
    assert_refused(&url_with(&format!(
        "use_ssl=true&ca={dir}/client.pem&certfile={dir}/client.pem&keyfile={dir}/client.key"
    )))
    .await;
}

#[tokio::test]
async fn clear_text_to_the_tls_port_is_refused() {
    if server().is_none() {
        return;
    }
    assert_refused(&url_with("use_ssl=false")).await;
}

#[tokio::test]
async fn bad_certificate_files_are_refused_when_the_url_is_read() {
    let Some((certs, _)) = server() else { return };
    let dir = std::env::temp_dir().join(format!("tooz-zk-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.display();
    for (query, option) in [
        ("use_ssl=true&ca=/nonexistent/ca.pem".to_string(), "ca"),
        (format!("use_ssl=true&ca={garbage}"), "ca"),
        (
            format!("use_ssl=true&ca={certs}/ca.pem&certfile={garbage}"),
            "certfile",
        ),
        (
            format!("use_ssl=true&ca={certs}/ca.pem&certfile={garbage}&keyfile={garbage}"),
            "keyfile",
        ),
        (
            "use_ssl=true&keyfile_password=hunter2".to_string(),
            "keyfile_password",
        ),
    ] {
        let url = url_with(&query);
        let error = Coordinator::connect(&url, "m")
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        match &error {
            Error::InvalidOption { option: o, .. } => assert_eq!(o, option, "{url}: {error}"),
            other => panic!("{url}: {other:?}"),
        }
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn python_tooz_over_tls_shares_locks_and_groups() {
    let Some((_, url)) = server() else { return };
    let Some(py) = support::python() else { return };
    let rust = start(&url, "tls-rust").await.expect("TLS connection");
    let name = format!("tls-interop-{}", std::process::id());
    let held = rust.lock(name.as_str()).acquire().await.unwrap();
    let out = support::python_output(&py, "peer.py", &["try-lock", &url, &name]);
    assert_eq!(out.trim(), "busy", "Python over TLS sees the Rust holder");
    held.release().await.unwrap();
    let out = support::python_output(&py, "peer.py", &["try-lock", &url, &name]);
    assert_eq!(out.trim(), "acquired");
    rust.stop().await.unwrap();
}
