//! etcd's authentication, both v3 transports: a server of the test's own on free loopback
//! ports, with a root user and auth enabled by `etcdctl`; it is gone at the end. Skipped
//! (saying so) when `etcd` or `etcdctl` is missing, except under `CI=true`.

#![cfg(all(feature = "etcd3", feature = "etcd3-http"))]

mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::{found, Server};
use support::TempDir;
use tooz::Coordinator;

const PASSWORD: &str = "s3cr3t/pa+ss=word";

fn etcdctl(endpoint: &str, args: &[&str]) {
    let status = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run etcdctl");
    assert!(status.success(), "etcdctl {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_passwords_work_on_both_transports() {
    if !found("etcd") || !found("etcdctl") {
        assert!(!support::is_ci(), "etcd and etcdctl are required under CI");
        eprintln!("skipping: etcd or etcdctl is missing");
        return;
    }
    let dir = TempDir::new("tooz-etcd-auth");
    let (port, peer) = (support::free_port(), support::free_port());
    let client_url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let server = Command::new("etcd")
        .args([
            "--name",
            "auth",
            "--data-dir",
            &dir.0.join("data").display().to_string(),
        ])
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("auth={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let _server = Server(server);
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "etcd did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let endpoint = format!("127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let added = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoint, "user", "add", "root"])
            .args(["--new-user-password", PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run etcdctl");
        if added.success() {
            break;
        }
        assert!(Instant::now() < end, "etcd never accepted a user");
        std::thread::sleep(Duration::from_millis(100));
    }
    etcdctl(&endpoint, &["auth", "enable"]);

    let encoded = "s3cr3t%2Fpa%2Bss%3Dword";
    for scheme in ["etcd3", "etcd3+http"] {
        let url = format!("{scheme}://root:{encoded}@127.0.0.1:{port}");
        let coord = support::started(&url, "auth-member").await;
        support::certs::lock_and_group_work(&coord, "auth-member").await;
        coord.stop().await.unwrap();

        // A wrong password is refused, and neither password is ever shown.
        let url = format!("{scheme}://root:wrong-{encoded}@127.0.0.1:{port}");
        let outcome = match Coordinator::connect(&url, "m").await {
            Ok(coord) => coord.start().await,
            Err(error) => Err(error),
        };
        let error = outcome.expect_err("a wrong password must be refused");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("pa+ss"), "{shown}");
    }
}
