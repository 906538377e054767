//! memcached under memory pressure: a server of its own (`memcached -m 2` on a free loopback
//! port, started and killed by the test) is filled until it evicts the driver's keys, and the
//! driver must notice, as its docs promise: the evicted lock is reported lost at the next
//! refresh, the next holder gets a larger fencing token, and the evicted member is back in its
//! group after its next heartbeat.
//!
//! Skipped (saying so) when no `memcached` binary is found, except under `CI=true`.

#![cfg(feature = "memcached")]

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tooz::{Capabilities, Coordinator, Id, LostReason};

/// The test's own memcached, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn memcached_binary() -> Option<&'static str> {
    ["/usr/bin/memcached", "/usr/local/bin/memcached"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Starts `memcached -m 2` on a free loopback port and waits (bounded) until it answers.
fn start_server() -> Option<Server> {
    let Some(binary) = memcached_binary() else {
        assert!(!support::is_ci(), "memcached is required under CI");
        eprintln!("skipping: no memcached binary");
        return None;
    };
    let port = support::free_port();
    let mut cmd = Command::new(binary);
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-m",
        "2",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "nobody"]);
    }
    let server = Server {
        child: cmd.spawn().expect("start memcached"),
        port,
    };
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "memcached did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// A raw connection to the test's server.
struct Raw {
    write: TcpStream,
    read: BufReader<TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Raw {
            read: BufReader::new(stream.try_clone().unwrap()),
            write: stream,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.read.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Whether `key` is stored (`me`, which, unlike a get, does not make it recently used).
    fn exists(&mut self, key: &[u8]) -> bool {
        self.write.write_all(b"me ").unwrap();
        self.write.write_all(key).unwrap();
        self.write.write_all(b"\r\n").unwrap();
        match self.line().as_str() {
            "EN" => false,
            other if other.starts_with("ME ") => true,
            other => panic!("me: {other}"),
        }
    }

    /// Stores `count` items of assorted sizes (so that every small slab class fills), quietly,
    /// then waits for them all to be processed.
    fn fill(&mut self, from: usize, count: usize) {
        let mut batch = Vec::new();
        for i in from..from + count {
            let size = 1 + (i * 7) % 400;
            batch.extend_from_slice(format!("ms fill-{i} {size} q\r\n").as_bytes());
            batch.extend(std::iter::repeat_n(b'x', size));
            batch.extend_from_slice(b"\r\n");
        }
        batch.extend_from_slice(b"mn\r\n");
        self.write.write_all(&batch).unwrap();
        loop {
            match self.line().as_str() {
                "MN" => return,
                "" => panic!("connection closed"),
                // Quiet sets answer only failures; an out-of-memory one is fine here.
                other if other.starts_with("SERVER_ERROR") || other == "NS" => {}
                other => panic!("fill: {other}"),
            }
        }
    }

    fn evictions(&mut self) -> u64 {
        self.write.write_all(b"stats\r\n").unwrap();
        let mut evictions = 0;
        loop {
            let line = self.line();
            if line == "END" || line.is_empty() {
                return evictions;
            }
            if let Some(n) = line.strip_prefix("STAT evictions ") {
                evictions = n.parse().unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_locks_are_lost_and_evicted_members_come_back() {
    let Some(server) = start_server() else { return };
    // timeout=8: heartbeats every 2 s, rarely enough for a fill to evict between two.
    let url = format!("memcached://127.0.0.1:{}?timeout=8", server.port);
    let (lock, group) = ("evicted-lock", "evicted-group");
    let holder = Coordinator::connect(&url, "holder").await.unwrap();
    holder.start().await.unwrap();
    holder
        .join_group_create(group, &b"zone-a"[..])
        .await
        .unwrap();
    let guard = holder.lock(lock).acquire().await.unwrap();
    let first = guard.fencing_token();

    // Fill until the lock and member keys are both gone (bounded: memcached -m 2 holds far
    // fewer items than this).
    let mut raw = Raw::connect(server.port);
    let lock_key = format!("__TOOZ_LOCK_{lock}").into_bytes();
    let member_key = b"_TOOZ_MEMBER_holder".to_vec();
    let mut stored = 0;
    while raw.exists(&lock_key) || raw.exists(&member_key) {
        assert!(stored < 2_000_000, "stored {stored} items: nothing evicted");
        raw.fill(stored, 10_000);
        stored += 10_000;
    }
    let evictions = raw.evictions();
    assert!(evictions > 0, "the keys went without evictions");
    eprintln!("evicted after {stored} items ({evictions} evictions)");

    // Readers see the member dead (its group may be evicted too).
    let other = Coordinator::connect(&url, "other").await.unwrap();
    other.start().await.unwrap();
    match other.get_members(group).await {
        Ok(members) => assert!(!members.contains(&Id::from("holder")), "{members:?}"),
        Err(tooz::Error::GroupNotCreated { .. }) => {}
        Err(error) => panic!("get_members: {error}"),
    }

    // The next refresh (heartbeats every window / 4 = 2 s) finds the lock gone.
    let reason = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost() within 5 s of the eviction");
    assert_eq!(reason, LostReason::Expired);
    let next = other
        .lock(lock)
        .acquire_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        next.fencing_token() > first,
        "{} after {first}",
        next.fencing_token()
    );

    // That heartbeat also stored the member key again and joined the group again.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let caps = other.get_member_capabilities(group, "holder").await;
        if matches!(&caps, Ok(c) if *c == Capabilities::from(&b"zone-a"[..])) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the evicted member is not back: {caps:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(other
        .get_members(group)
        .await
        .unwrap()
        .contains(&Id::from("holder")));
    assert!(next.release().await.unwrap());
    assert!(
        !guard.release().await.unwrap(),
        "a lost lock's release says false"
    );
    other.stop().await.unwrap();
    holder.stop().await.unwrap();
    drop(server);
}
