//! memcached over TLS: a server of the test's own (`memcached -Z`, requiring a client
//! certificate) on a free loopback port, with a throwaway CA made by `openssl`; both are gone
//! at the end. Skipped (saying so) when `memcached` or `openssl` is missing, except under
//! `CI=true`.

#![cfg(feature = "memcached-tls")]

#[path = "support/mod.rs"]
mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tooz::{Coordinator, Error};

use support::certs::{found, make_certs, Server};
use support::TempDir;

fn start_server(dir: &Path) -> (Server, u16) {
    let port = support::free_port();
    let files = |name: &str| dir.join(name).display().to_string();
    let tls = format!(
        "ssl_chain_cert={},ssl_key={},ssl_ca_cert={},ssl_verify_mode=2",
        files("server.pem"),
        files("server.key"),
        files("ca.pem")
    );
    let mut cmd = Command::new("memcached");
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-m",
        "8",
        "-Z",
    ])
    .args(["-o", &tls])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "root"]);
    }
    let server = Server(cmd.spawn().expect("start memcached"));
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "memcached -Z did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_and_groups_work_over_tls() {
    if !found("memcached") || !found("openssl") {
        assert!(
            !support::is_ci(),
            "memcached and openssl are required under CI"
        );
        eprintln!("skipping: memcached or openssl is missing");
        return;
    }
    let dir = TempDir::new("tooz-memcached-tls");
    make_certs(&dir.0);
    let (_server, port) = start_server(&dir.0);
    let file = |name: &str| dir.0.join(name).display().to_string();
    let client = format!(
        "use_ssl=true&ca_cert={}&ssl_cert={}&ssl_key={}",
        file("ca.pem"),
        file("client.pem"),
        file("client.key")
    );

    // The name is checked when asked (the certificate names 127.0.0.1 and localhost).
    for url in [
        format!("memcached://127.0.0.1:{port}?{client}"),
        format!("memcached://localhost:{port}?{client}&ssl_check_hostname=true"),
    ] {
        let coord = Coordinator::connect(&url, "tls-member").await.unwrap();
        coord.start().await.unwrap();
        support::certs::lock_and_group_work(&coord, "tls-member").await;
        coord.stop().await.unwrap();
    }

    // A server whose certificate another CA signed is refused, whatever the name checks.
    let stranger = TempDir::new("tooz-memcached-tls-other");
    make_certs(&stranger.0);
    let other_ca = stranger.0.join("ca.pem").display().to_string();
    let url = format!(
        "memcached://127.0.0.1:{port}?use_ssl=true&ca_cert={other_ca}&ssl_cert={}&ssl_key={}",
        file("client.pem"),
        file("client.key")
    );
    let coord = Coordinator::connect(&url, "m").await.unwrap();
    let error = coord.start().await.unwrap_err();
    assert!(matches!(error, Error::Connection(_)), "{error}");

    // Without a client certificate the server (ssl_verify_mode=2) hangs up.
    let url = format!(
        "memcached://127.0.0.1:{port}?use_ssl=true&ca_cert={}",
        file("ca.pem")
    );
    let coord = Coordinator::connect(&url, "m").await.unwrap();
    assert!(coord.start().await.is_err());

    // Encrypted keys are refused up front, and the password is never shown.
    let error = Coordinator::connect(&format!("{url}&ssl_key_password=hunter2"), "m")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidOption { .. }), "{error}");
    assert!(!format!("{error} {error:?}").contains("hunter2"));
}
