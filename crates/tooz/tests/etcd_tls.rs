//! etcd over TLS, all three drivers: a server of the test's own (`etcd` with a client
//! certificate required) on free loopback ports, with a throwaway CA made by `openssl`; both
//! are gone at the end. Skipped (saying so) when `etcd` or `openssl` is missing, except under
//! `CI=true`.

#![cfg(all(
    feature = "etcd-tls",
    feature = "etcd3-tls",
    feature = "etcd3-http-tls"
))]

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::{found, make_certs, Server};
use support::TempDir;
use tooz::{Coordinator, Error};

fn start_server(dir: &Path) -> (Server, u16) {
    let (port, peer) = (support::free_port(), support::free_port());
    let file = |name: &str| dir.join(name).display().to_string();
    let client_url = format!("https://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let server = Command::new("etcd")
        .args(["--name", "tls", "--data-dir", &file("data")])
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("tls={peer_url}")])
        .args([
            "--cert-file",
            &file("server.pem"),
            "--key-file",
            &file("server.key"),
        ])
        .args(["--trusted-ca-file", &file("ca.pem"), "--client-cert-auth"])
        .arg("--enable-v2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let server = Server(server);
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < end,
            "etcd with TLS did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_transports_work_over_tls() {
    if !found("etcd") || !found("openssl") {
        assert!(!support::is_ci(), "etcd and openssl are required under CI");
        eprintln!("skipping: etcd or openssl is missing");
        return;
    }
    let dir = TempDir::new("tooz-etcd-tls");
    make_certs(&dir.0);
    let (_server, port) = start_server(&dir.0);
    let file = |name: &str| dir.0.join(name).display().to_string();
    let client = format!(
        "ca_cert={}&cert_cert={}&cert_key={}",
        file("ca.pem"),
        file("client.pem"),
        file("client.key")
    );

    for url in [
        format!("etcd3://127.0.0.1:{port}?{client}"),
        format!("etcd3+https://127.0.0.1:{port}?{client}"),
        format!("etcd://127.0.0.1:{port}?protocol=https&{client}"),
    ] {
        // The server may still be electing itself: the first start is retried, bounded.
        let coord = Coordinator::connect(&url, "tls-member").await.unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while let Err(error) = coord.start().await {
            assert!(Instant::now() < end, "{url}: {error}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        support::certs::lock_and_group_work(&coord, "tls-member").await;
        coord.stop().await.unwrap();
    }

    // A server whose certificate another CA signed is refused, on every transport.
    let stranger = TempDir::new("tooz-etcd-tls-other");
    make_certs(&stranger.0);
    let other_ca = stranger.0.join("ca.pem").display().to_string();
    let keys = format!(
        "cert_cert={}&cert_key={}",
        file("client.pem"),
        file("client.key")
    );
    for scheme in ["etcd3://", "etcd3+https://", "etcd://"] {
        let tls = if scheme == "etcd://" {
            "protocol=https&"
        } else {
            ""
        };
        let url = format!("{scheme}127.0.0.1:{port}?{tls}ca_cert={other_ca}&{keys}&timeout=4");
        let coord = Coordinator::connect(&url, "m").await.unwrap();
        let error = coord.start().await.unwrap_err();
        assert!(
            matches!(error, Error::Connection(_) | Error::OperationTimedOut(_)),
            "{scheme}: {error}"
        );
    }
}
