//! The fault proxy against a small loopback echo server: one test per mode.
//!
//! Every wait is bounded by a timeout and every loop by a count.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tooz_testkit::{FaultProxy, Mode};

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long a test listens for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

/// A loopback echo server that counts its connections and the bytes it received.
struct Echo {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    /// Connections that ended with an error (a reset) rather than a clean end of stream.
    resets: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let resets = Arc::new(AtomicUsize::new(0));
        let (c, r, x) = (connections.clone(), received.clone(), resets.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (r, x) = (r.clone(), x.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) => return,
                            Ok(n) => {
                                r.fetch_add(n, Ordering::SeqCst);
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    x.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                            }
                            Err(_) => {
                                x.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                });
            }
        });
        Echo {
            addr,
            connections,
            received,
            resets,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }
}

/// An echo server and a proxy in front of it.
async fn setup() -> (Echo, FaultProxy) {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    (echo, proxy)
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    timeout(PATIENCE, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Writes `msg` and reads exactly as many bytes back, within PATIENCE.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    timeout(PATIENCE, stream.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .expect("echo failed");
    back
}

/// What one read within `wait` gives.
#[derive(Debug, PartialEq)]
enum Heard {
    Nothing,
    Data(Vec<u8>),
    Eof,
    Error(io::ErrorKind),
}

async fn listen(stream: &mut TcpStream, wait: Duration) -> Heard {
    let mut buf = [0u8; 1024];
    match timeout(wait, stream.read(&mut buf)).await {
        Err(_) => Heard::Nothing,
        Ok(Ok(0)) => Heard::Eof,
        Ok(Ok(n)) => Heard::Data(buf[..n].to_vec()),
        Ok(Err(e)) => Heard::Error(e.kind()),
    }
}

/// Polls `cond` every 10 ms, at most PATIENCE long.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pass_through_relays_and_counts_connections() {
    let (echo, proxy) = setup().await;
    assert_eq!(proxy.mode(), Mode::PassThrough);
    assert_eq!(proxy.accepted(), 0);
    for i in 0..3u8 {
        let mut client = connect(&proxy).await;
        assert_eq!(
            round_trip(&mut client, &[b'a' + i; 10]).await,
            vec![b'a' + i; 10]
        );
    }
    assert_eq!(proxy.accepted(), 3);
    assert_eq!(echo.connections(), 3);
    eventually("closed connections to be counted", || proxy.active() == 0).await;
}

#[tokio::test]
async fn large_transfer_is_relayed_intact() {
    let (_echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.split();
    let sent = data.clone();
    let writer = async move { write.write_all(&sent).await };
    let mut back = vec![0u8; data.len()];
    let reader = read.read_exact(&mut back);
    let (w, r) = timeout(PATIENCE, async { tokio::join!(writer, reader) })
        .await
        .expect("transfer timed out");
    w.unwrap();
    r.unwrap();
    assert!(back == data, "bytes differ");
}

#[tokio::test]
async fn delay_holds_each_chunk_at_least_the_base_delay() {
    let (_echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"warm").await;
    let base = Duration::from_millis(150);
    proxy.delay(base, Duration::from_millis(50));
    assert_eq!(
        proxy.mode(),
        Mode::Delay {
            base,
            jitter: Duration::from_millis(50)
        }
    );
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"slow").await, b"slow");
    let took = started.elapsed();
    // Delayed on the way there and on the way back.
    assert!(took >= 2 * base, "round trip took only {took:?}");
    assert!(took < PATIENCE, "round trip took {took:?}");

    // Order is kept across chunks with different jitter.
    for i in 0..5u8 {
        client.write_all(&[i]).await.unwrap();
    }
    let mut back = [0u8; 5];
    timeout(PATIENCE, client.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, [0, 1, 2, 3, 4]);

    proxy.heal();
    let started = Instant::now();
    round_trip(&mut client, b"fast").await;
    assert!(started.elapsed() < base, "still delayed after heal");
}

#[tokio::test]
async fn drop_random_delays_like_retransmissions_and_keeps_every_byte() {
    let (_echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"warm").await;

    // Every chunk lost once: each direction waits a retransmission timeout (>= 200 ms).
    proxy.drop_random(1.0);
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"late").await, b"late");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    proxy.drop_random(0.0);
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"kept").await, b"kept");
    assert!(started.elapsed() < Duration::from_millis(200));

    // Half lost: every byte still arrives, in order, some of them late.
    proxy.drop_random(0.5);
    let mut late = 0;
    for i in 0..20u8 {
        let started = Instant::now();
        assert_eq!(round_trip(&mut client, &[i]).await, [i]);
        if started.elapsed() >= Duration::from_millis(200) {
            late += 1;
        }
    }
    assert!(0 < late && late < 20, "{late} of 20 late");
}

#[tokio::test]
#[should_panic(expected = "drop probability")]
async fn drop_random_rejects_a_bad_probability() {
    let (_echo, proxy) = setup().await;
    proxy.drop_random(1.5);
}

#[tokio::test]
async fn cut_resets_open_connections_only() {
    let (echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"before").await;

    proxy.cut();
    match listen(&mut client, PATIENCE).await {
        Heard::Error(kind) => assert_eq!(kind, io::ErrorKind::ConnectionReset),
        other => panic!("expected a reset, got {other:?}"),
    }
    // The server side was reset too.
    eventually("the server to see a reset", || echo.resets() == 1).await;
    eventually("the connection to be closed", || proxy.active() == 0).await;

    // New connections work as before.
    let mut again = connect(&proxy).await;
    assert_eq!(round_trip(&mut again, b"after").await, b"after");
}

#[tokio::test]
async fn black_hole_swallows_without_resetting() {
    let (echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"before").await;

    proxy.black_hole();
    client.write_all(b"ping").await.unwrap();
    assert_eq!(listen(&mut client, QUIET).await, Heard::Nothing);
    // Still not reset nor closed: a second look hears nothing either, and writing works.
    client.write_all(b"ping").await.unwrap();
    assert_eq!(listen(&mut client, QUIET).await, Heard::Nothing);
    assert_eq!(echo.received(), 6, "the server got black-holed bytes");

    // A new connection is accepted but never reaches the server.
    let mut late = connect(&proxy).await;
    late.write_all(b"hello?").await.unwrap();
    assert_eq!(listen(&mut late, QUIET).await, Heard::Nothing);
    eventually("the proxy to accept", || proxy.accepted() == 2).await;
    assert_eq!(echo.connections(), 1);

    // Heal: the connection that lost bytes is reset (no stream with a gap in it).
    proxy.heal();
    match listen(&mut client, PATIENCE).await {
        Heard::Error(kind) => assert_eq!(kind, io::ErrorKind::ConnectionReset),
        other => panic!("expected a reset, got {other:?}"),
    }
    // The connection made during the black hole now reaches the server.
    assert_eq!(round_trip(&mut late, b"late").await, b"late");
    assert_eq!(echo.connections(), 2);
}

#[tokio::test]
async fn drop_replies_lets_requests_through_but_not_answers() {
    let (echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"hi").await;

    proxy.drop_replies();
    client.write_all(b"request").await.unwrap();
    eventually("the server to get the request", || echo.received() == 2 + 7).await;
    assert_eq!(listen(&mut client, QUIET).await, Heard::Nothing);

    // The answer is lost for good: at heal the connection is reset, a new one works.
    proxy.heal();
    match listen(&mut client, PATIENCE).await {
        Heard::Error(kind) => assert_eq!(kind, io::ErrorKind::ConnectionReset),
        other => panic!("expected a reset, got {other:?}"),
    }
    let mut again = connect(&proxy).await;
    assert_eq!(round_trip(&mut again, b"answer me").await, b"answer me");
}

#[tokio::test]
async fn stall_holds_bytes_and_loses_none() {
    let (echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"hi").await;

    proxy.stall();
    client.write_all(b"held").await.unwrap();
    assert_eq!(listen(&mut client, QUIET).await, Heard::Nothing);
    assert_eq!(echo.received(), 2);

    proxy.heal();
    let mut back = [0u8; 4];
    timeout(PATIENCE, client.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"held");
}

#[tokio::test]
async fn a_down_upstream_resets_the_client() {
    // A port that was just free: nothing listens there.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let proxy = FaultProxy::start(addr).await.unwrap();
    let mut client = connect(&proxy).await;
    match listen(&mut client, PATIENCE).await {
        Heard::Error(io::ErrorKind::ConnectionReset) | Heard::Eof => {}
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let (_echo, proxy) = setup().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"hi").await;
    let addr = proxy.addr();
    drop(proxy);
    match listen(&mut client, PATIENCE).await {
        Heard::Error(io::ErrorKind::ConnectionReset) | Heard::Eof => {}
        other => panic!("expected the connection to end, got {other:?}"),
    }
    // Nothing listens any more (the accept task is gone); allow the runtime a moment.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the proxy still accepts after being dropped");
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let err = FaultProxy::start("192.0.2.1:80".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = FaultProxy::start_at(
        "0.0.0.0:0".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn start_at_reuses_a_known_port() {
    let echo = Echo::start().await;
    let first = FaultProxy::start(echo.addr).await.unwrap();
    let addr = first.addr();
    drop(first);
    // The port is free again once the accept task has gone: retry briefly.
    let mut proxy = None;
    for _ in 0..50 {
        match FaultProxy::start_at(addr, echo.addr).await {
            Ok(p) => {
                proxy = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let proxy = proxy.expect("could not listen on the same port again");
    assert_eq!(proxy.addr(), addr);
    let mut client = connect(&proxy).await;
    assert_eq!(round_trip(&mut client, b"same port").await, b"same port");
}
