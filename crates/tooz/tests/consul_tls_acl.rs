//! Consul over TLS with ACLs: an agent of the test's own (`consul agent -dev`, HTTPS only,
//! ACLs on with a deny-all default) on free loopback ports, with a throwaway CA made by
//! `openssl`; both are gone at the end. Skipped (saying so) when `consul` or `openssl` is
//! missing, except under `CI=true`.

#![cfg(feature = "consul-tls")]

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::{found, make_certs, Server};
use support::TempDir;
use tooz::Coordinator;

const ROOT_TOKEN: &str = "3b0b5cfc-tooz-test-root-token";

/// Starts the agent, on fresh ports each try: a port picked free can be taken by another
/// test before the agent binds it (then the agent exits). Bounded: three tries.
fn start_agent(dir: &Path) -> (Server, u16) {
    for _ in 0..3 {
        if let Some(started) = try_start_agent(dir) {
            return started;
        }
    }
    panic!("consul with TLS did not start in three tries");
}

/// One try: `None` if the agent exits or does not listen within 30 s.
fn try_start_agent(dir: &Path) -> Option<(Server, u16)> {
    let port = |_: &str| support::free_port();
    let (https, serf_lan, serf_wan, server) =
        (port("https"), port("lan"), port("wan"), port("server"));
    let file = |name: &str| dir.join(name).display().to_string();
    let config = format!(
        r#"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports {{
  http = -1
  https = {https}
  dns = -1
  grpc = -1
  serf_lan = {serf_lan}
  serf_wan = {serf_wan}
  server = {server}
}}
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
verify_incoming_https = false
acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    master = "{ROOT_TOKEN}"
  }}
}}
"#,
        ca = file("ca.pem"),
        cert = file("server.pem"),
        key = file("server.key"),
    );
    std::fs::write(dir.join("agent.hcl"), config).unwrap();
    let agent = Command::new("consul")
        .args(["agent", "-dev", "-config-file", &file("agent.hcl")])
        .args(["-node", "tooz-tls-test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start consul");
    let mut agent = Server(agent);
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", https)).is_err() {
        let exited = matches!(agent.0.try_wait(), Ok(Some(_)));
        if exited || Instant::now() >= end {
            eprintln!("consul with TLS did not start on {https} (exited: {exited})");
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((agent, https))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_acl_tokens_work() {
    if !found("consul") || !found("openssl") {
        assert!(
            !support::is_ci(),
            "consul and openssl are required under CI"
        );
        eprintln!("skipping: consul or openssl is missing");
        return;
    }
    let dir = TempDir::new("tooz-consul-tls");
    make_certs(&dir.0);
    let (_agent, port) = start_agent(&dir.0);
    let ca = dir.0.join("ca.pem").display().to_string();
    let base = format!("consul://127.0.0.1:{port}?protocol=https&ca_cert={ca}&ttl=10");

    // The root token may do everything. The agent may still be electing itself: the first
    // start is retried, bounded.
    let coord = Coordinator::connect(&format!("{base}&token={ROOT_TOKEN}"), "tls-member")
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while let Err(error) = coord.start().await {
        assert!(Instant::now() < end, "{error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    support::certs::lock_and_group_work(&coord, "tls-member").await;
    coord.stop().await.unwrap();

    // Python tooz's name for the token works too.
    let coord = support::started(&format!("{base}&acl_token={ROOT_TOKEN}"), "acl-member").await;
    coord.stop().await.unwrap();

    // Without a token, or with a wrong one, the agent refuses; the token is never shown.
    for url in [base.clone(), format!("{base}&token=wrong-secret-token")] {
        let coord = Coordinator::connect(&url, "m").await.unwrap();
        let error = coord.start().await.unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("wrong-secret-token"), "{shown}");
        assert!(!shown.contains(ROOT_TOKEN), "{shown}");
    }

    // A server whose certificate another CA signed is refused.
    let stranger = TempDir::new("tooz-consul-tls-other");
    make_certs(&stranger.0);
    let other_ca = stranger.0.join("ca.pem").display().to_string();
    let url = format!(
        "consul://127.0.0.1:{port}?protocol=https&ca_cert={other_ca}&ttl=10&token={ROOT_TOKEN}"
    );
    let coord = Coordinator::connect(&url, "m").await.unwrap();
    let error = coord.start().await.unwrap_err();
    assert!(
        matches!(
            error,
            tooz::Error::Connection(_) | tooz::Error::OperationTimedOut(_)
        ),
        "{error}"
    );
}
