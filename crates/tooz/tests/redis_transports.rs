//! The redis driver over a unix socket, with a password and a database number, and over TLS
//! (cargo feature `redis-tls`), each against a private `redis-server` started by the test on
//! loopback and stopped at its end. Skipped when `redis-server` (or, for TLS, `openssl`) is
//! missing, except under `CI=true`.
#![cfg(feature = "redis")]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TempDir;
use tooz::{ConnectionState, Coordinator, Error, LostReason};

fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{program} is required under CI");
        }
        eprintln!("skipping: {program} is missing");
    }
    found
}

/// A private redis-server, killed when dropped.
struct Server(Child);

impl Server {
    fn start(dir: &Path, args: &[&str], ready: impl Fn() -> bool) -> Server {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server(child);
        let end = Instant::now() + Duration::from_secs(20);
        while !ready() {
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn exercise(url: &str) {
    let coord = Coordinator::connect(url, "transport").await.unwrap();
    coord.start().await.unwrap();
    coord.join_group_create("g", b"caps").await.unwrap();
    let members = coord.get_members_with_capabilities("g").await.unwrap();
    assert_eq!(members.len(), 1);
    let guard = coord.lock("l").acquire().await.unwrap();
    assert!(coord.lock("l").try_acquire().await.unwrap().is_none());
    guard.release().await.unwrap();
    coord.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_with_password_and_database() {
    if !have("redis-server") {
        return;
    }
    let dir = TempDir::new("tooz-redis-unix");
    let socket = dir.0.join("redis.sock");
    let probe = socket.clone();
    let _server = Server::start(
        &dir.0,
        &[
            "--port",
            "0",
            "--unixsocket",
            socket.to_str().unwrap(),
            "--requirepass",
            "hunter2",
        ],
        move || probe.exists(),
    );
    // No host: the path is the socket (the password goes in an option: `redis://:pw@/path`
    // has an empty host, which URL parsing rejects).
    exercise(&format!(
        "redis://{}?db=3&password=hunter2",
        socket.display()
    ))
    .await;

    let client = redis::Client::open(format!(
        "redis+unix://{}?db=3&pass=hunter2",
        socket.display()
    ))
    .unwrap();
    let mut conn = client.get_connection().unwrap();
    let groups: Vec<String> = redis::cmd("SMEMBERS")
        .arg("_tooz_groups")
        .query(&mut conn)
        .unwrap();
    assert_eq!(groups, ["g"], "the data went to database 3");

    let wrong = format!("redis://{}?password=wrong-secret", socket.display());
    let coord = Coordinator::connect(&wrong, "m").await.unwrap();
    let err = coord.start().await.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err}");
    assert!(!err.to_string().contains("wrong-secret"), "{err}");
    assert!(!format!("{err:?}").contains("wrong-secret"));
}

#[cfg(feature = "redis-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    if !have("redis-server") || !have("openssl") {
        return;
    }
    let dir = TempDir::new("tooz-redis-tls");
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=tooz test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.0.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    let port = support::free_port();
    let path = |name: &str| dir.0.join(name).display().to_string();
    let _server = Server::start(
        &dir.0,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.pem"),
            "--tls-auth-clients",
            "no",
        ],
        move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let ca = path("ca.pem");
    exercise(&format!("rediss://127.0.0.1:{port}?ssl_ca_certs={ca}")).await;
    exercise(&format!(
        "redis://127.0.0.1:{port}?ssl=true&ssl_ca_certs={ca}"
    ))
    .await;

    // Without the CA the server's certificate is not trusted.
    let coord = Coordinator::connect(&format!("rediss://127.0.0.1:{port}"), "m")
        .await
        .unwrap();
    assert!(matches!(coord.start().await, Err(Error::Connection(_))));
}

/// A holder whose server is turned into a replica (a failover it was not told of, on a direct
/// URL) can neither refresh nor confirm its lock: `lost()` fires within the session's grace.
/// When the server takes writes again the coordinator is `Connected` anew, and the next lock
/// lost the same way is reported too.
#[tokio::test]
async fn a_holder_whose_server_becomes_a_replica_is_told_its_lock_is_lost() {
    if !have("redis-server") {
        return;
    }
    let dir = TempDir::new("tooz-demoted");
    let (a, b) = (support::free_port(), support::free_port());
    let ping = |port: u16| {
        move || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.write_all(b"PING\r\n")?;
                    let mut buf = [0u8; 7];
                    s.read_exact(&mut buf)?;
                    Ok(buf == *b"+PONG\r\n")
                })
                .unwrap_or(false)
        }
    };
    let _a = Server::start(&dir.0, &["--port", &a.to_string()], ping(a));
    let _b = Server::start(&dir.0, &["--port", &b.to_string()], ping(b));
    let replica_of = |target: &str| {
        let (host, port) = target.split_once(' ').unwrap();
        let status = Command::new("redis-cli")
            .args(["-p", &a.to_string(), "REPLICAOF", host, port])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    let url = format!("redis://127.0.0.1:{a}?timeout=2");
    let coord = Coordinator::connect(&url, "demoted").await.unwrap();
    coord.start().await.unwrap();
    for round in 0..2 {
        let held = coord.lock("l").acquire().await.unwrap();
        // `a` becomes a replica of the empty `b`: the lock is gone from both.
        replica_of(&format!("127.0.0.1 {b}"));
        let reason = tokio::time::timeout(Duration::from_secs(15), held.lost())
            .await
            .unwrap_or_else(|_| panic!("round {round}: lost() must fire"));
        assert_eq!(reason, LostReason::SessionLost);
        // `a` takes writes again: a new session.
        replica_of("NO ONE");
        let mut states = coord.connection_states();
        tokio::time::timeout(Duration::from_secs(15), async {
            while *states.borrow_and_update() != ConnectionState::Connected {
                states.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: connected again"));
    }
    coord.stop().await.unwrap();
}
