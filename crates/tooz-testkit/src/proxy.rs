//! A loopback TCP proxy that injects network faults between a client and a server.
//!
//! Point a client at [`FaultProxy::addr`] instead of the server, then change the proxy's
//! [`Mode`] at any time to delay, lose (as TCP loses packets), black-hole or hold the bytes it
//! relays, or [`cut`](FaultProxy::cut) every open connection with a TCP reset.
//!
//! The proxy runs inside the test process on the current tokio runtime and only ever touches
//! loopback addresses: it listens on `127.0.0.1` (or `[::1]`) and refuses upstreams that are
//! not loopback.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use tooz_testkit::FaultProxy;
//!
//! let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
//! let url = format!("redis://{}", proxy.addr());
//! // ... connect a client to `url` ...
//! proxy.delay(Duration::from_millis(200), Duration::from_millis(50));
//! proxy.black_hole(); // the server seems to vanish, no connection is reset
//! proxy.heal(); // back to normal
//! proxy.cut(); // every open connection gets a TCP reset
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// Size of the buffer each direction of a connection reads into: one read is one "chunk".
const CHUNK: usize = 16 * 1024;

/// Shortest and longest delay of a lost chunk (TCP's retransmission timeout, from its 200 ms
/// floor to a couple of doublings).
const RETRANSMISSION: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(1));

/// What a [`FaultProxy`] currently does with the bytes it relays.
///
/// A mode applies to every connection, open or new, from the moment it is set. The relay works
/// on *chunks*: whatever one `read` returned from a socket, so a message may span several chunks
/// and several small messages may share one.
///
/// A connection never carries a stream TCP could not deliver: bytes arrive in order or not
/// at all. A connection that lost bytes (black hole, dropped replies) goes on losing
/// everything in that direction, and is reset when the mode stops discarding, as a real
/// connection that lost data dies of its retransmission timeout.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Mode {
    /// Relay every byte unchanged, in both directions.
    PassThrough,
    /// Hold each chunk for `base` plus a uniformly random extra in `[0, jitter]`, in both
    /// directions. The order of the bytes is kept, and delays do not add up across chunks.
    Delay {
        /// Minimum time each chunk is held.
        base: Duration,
        /// Upper bound of the random extra time added to `base`.
        jitter: Duration,
    },
    /// Lose each chunk, in either direction, with this probability (between 0 and 1), as a
    /// TCP connection sees packet loss: the chunk arrives late, after a retransmission
    /// timeout (200 ms to 1 s), and everything behind it waits.
    DropRandom {
        /// Probability that a chunk is lost (and sent again).
        probability: f64,
    },
    /// Read and discard everything, in both directions, and never answer. Open connections
    /// stay open (no reset, no end of stream) while the mode lasts; those that lost bytes are
    /// reset when it ends. New connections are accepted but do not reach the upstream server
    /// until the mode changes.
    BlackHole,
    /// Relay client-to-server bytes but discard server-to-client bytes: the server does the
    /// work, the client never hears back (and the connection is reset when the mode ends).
    DropReplies,
    /// Stop reading in both directions: bytes wait in the kernel's socket buffers (writers
    /// eventually block, as in a network partition where TCP keeps retransmitting) and all
    /// of them flow again once the mode changes. New connections are accepted but do not
    /// reach the upstream server until then.
    Stall,
}

impl Mode {
    /// Whether bytes travelling in `dir` are thrown away (rather than relayed or held).
    fn discards(&self, dir: Direction) -> bool {
        match self {
            Mode::BlackHole => true,
            Mode::DropReplies => dir == Direction::ToClient,
            _ => false,
        }
    }

    /// What happens to one chunk travelling in `dir`.
    fn fate(&self, dir: Direction, rng: &mut Rng) -> Fate {
        match self {
            Mode::PassThrough | Mode::Stall => Fate::Forward,
            Mode::Delay { base, jitter } => Fate::Delay(*base + jitter.mul_f64(rng.next_f64())),
            Mode::DropRandom { probability } => {
                if rng.next_f64() < *probability {
                    Fate::Delay(
                        RETRANSMISSION.0
                            + (RETRANSMISSION.1 - RETRANSMISSION.0).mul_f64(rng.next_f64()),
                    )
                } else {
                    Fate::Forward
                }
            }
            Mode::BlackHole => Fate::Discard,
            Mode::DropReplies => {
                if dir == Direction::ToClient {
                    Fate::Discard
                } else {
                    Fate::Forward
                }
            }
        }
    }
}

/// The two directions of a relayed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// From the client to the upstream server.
    ToUpstream,
    /// From the upstream server back to the client.
    ToClient,
}

/// What happens to one chunk.
enum Fate {
    Forward,
    Delay(Duration),
    Discard,
}

/// Counters shared with the proxy's tasks.
#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    active: AtomicUsize,
}

/// Everything a connection task needs.
#[derive(Clone)]
struct ConnCtx {
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    cut: watch::Receiver<u64>,
    stats: Arc<Stats>,
}

/// A TCP proxy on a loopback port that relays to one upstream server and injects faults.
///
/// Start it with [`FaultProxy::start`], connect clients to [`addr`](FaultProxy::addr), and
/// switch its [`Mode`] with the methods below at any time; they take effect at once on every
/// open connection. Dropping the proxy stops accepting and resets every open connection.
///
/// It needs a tokio runtime with the time and I/O drivers enabled (as `#[tokio::test]` gives).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    cut: watch::Sender<u64>,
    stats: Arc<Stats>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats")
            .field("accepted", &self.accepted.load(Ordering::Relaxed))
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free port of the loopback address of the same family
    /// (`127.0.0.1` or `[::1]`), in [`Mode::PassThrough`].
    ///
    /// # Errors
    ///
    /// An error of kind [`io::ErrorKind::InvalidInput`] if `upstream` is not a loopback
    /// address, or the error from binding the listening socket.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let ip = if upstream.ip().to_canonical().is_ipv6() {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        FaultProxy::start_at(SocketAddr::new(ip, 0), upstream).await
    }

    /// Starts a proxy to `upstream` listening on `listen` (port 0 picks a free port), in
    /// [`Mode::PassThrough`]. Useful to put a proxy back on the port a client already knows.
    ///
    /// # Errors
    ///
    /// An error of kind [`io::ErrorKind::InvalidInput`] if `listen` or `upstream` is not a
    /// loopback address, or the error from binding the listening socket (for example
    /// [`io::ErrorKind::AddrInUse`]).
    pub async fn start_at(listen: SocketAddr, upstream: SocketAddr) -> io::Result<FaultProxy> {
        ensure_loopback("listen", listen)?;
        ensure_loopback("upstream", upstream)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(Mode::PassThrough);
        let (cut, cut_rx) = watch::channel(0u64);
        let stats = Arc::new(Stats::default());
        let ctx = ConnCtx {
            upstream,
            mode: mode_rx,
            cut: cut_rx,
            stats: Arc::clone(&stats),
        };
        let accept_task = tokio::spawn(accept_loop(listener, ctx));
        Ok(FaultProxy {
            addr,
            upstream,
            mode,
            cut,
            stats,
            accept_task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy relays to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode.borrow().clone()
    }

    /// Sets the mode; it applies at once to every open connection and to new ones.
    ///
    /// # Panics
    ///
    /// If `mode` is [`Mode::DropRandom`] with a probability outside `[0, 1]` (or NaN).
    pub fn set_mode(&self, mode: Mode) {
        if let Mode::DropRandom { probability } = mode {
            assert!(
                (0.0..=1.0).contains(&probability),
                "drop probability must be within [0, 1], got {probability}"
            );
        }
        self.mode.send_replace(mode);
    }

    /// Relays every byte unchanged ([`Mode::PassThrough`]).
    pub fn pass_through(&self) {
        self.set_mode(Mode::PassThrough);
    }

    /// Holds each chunk for `base` plus a random extra of up to `jitter` ([`Mode::Delay`]).
    pub fn delay(&self, base: Duration, jitter: Duration) {
        self.set_mode(Mode::Delay { base, jitter });
    }

    /// Loses each chunk, in both directions, with `probability`: it arrives after a
    /// retransmission delay, in order ([`Mode::DropRandom`]).
    ///
    /// # Panics
    ///
    /// If `probability` is not within `[0, 1]`.
    pub fn drop_random(&self, probability: f64) {
        self.set_mode(Mode::DropRandom { probability });
    }

    /// Accepts, reads and discards, never answers; open connections stop relaying without
    /// being reset, until the mode ends ([`Mode::BlackHole`]).
    pub fn black_hole(&self) {
        self.set_mode(Mode::BlackHole);
    }

    /// Relays client-to-server bytes, discards server-to-client bytes ([`Mode::DropReplies`]).
    pub fn drop_replies(&self) {
        self.set_mode(Mode::DropReplies);
    }

    /// Stops reading in both directions so bytes wait, none lost, until the mode changes
    /// ([`Mode::Stall`]).
    pub fn stall(&self) {
        self.set_mode(Mode::Stall);
    }

    /// Back to normal: the same as [`pass_through`](FaultProxy::pass_through).
    pub fn heal(&self) {
        self.pass_through();
    }

    /// Closes every connection the proxy has accepted so far with a TCP reset (`SO_LINGER` 0),
    /// on both the client and the server side. The mode is unchanged and new connections are
    /// accepted as usual.
    ///
    /// The resets are sent by the connections' tasks right after this returns. A connection
    /// still waiting in the kernel's accept queue is not affected: to cut a fresh connection,
    /// first do a round trip on it or wait until [`accepted`](FaultProxy::accepted) counts it.
    pub fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// How many connections the proxy has accepted since it started.
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// How many accepted connections are still open.
    pub fn active(&self) -> usize {
        self.stats.active.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The connection tasks see the senders go away and reset their connections.
        self.accept_task.abort();
    }
}

/// Fails with `InvalidInput` unless `addr` is a loopback address.
fn ensure_loopback(what: &str, addr: SocketAddr) -> io::Result<()> {
    if addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fault proxy: {what} address {addr} is not a loopback address"),
        ))
    }
}

/// Accepts connections until the proxy is dropped, one task per connection.
async fn accept_loop(listener: TcpListener, ctx: ConnCtx) {
    loop {
        match listener.accept().await {
            Ok((client, _peer)) => {
                ctx.stats.accepted.fetch_add(1, Ordering::SeqCst);
                ctx.stats.active.fetch_add(1, Ordering::SeqCst);
                let mut conn = ctx.clone();
                // Only cuts made from now on concern this connection.
                conn.cut.borrow_and_update();
                tokio::spawn(handle(client, conn));
            }
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Decrements the count of open connections when a connection task ends.
struct ActiveGuard(Arc<Stats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes `stream` with a TCP reset.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Serves one accepted connection: reaches the upstream when the mode allows, then relays.
async fn handle(mut client: TcpStream, mut ctx: ConnCtx) {
    let _guard = ActiveGuard(Arc::clone(&ctx.stats));
    let _ = client.set_nodelay(true);
    let upstream = loop {
        let mode = ctx.mode.borrow_and_update().clone();
        match mode {
            // Swallow what the client sends; nothing reaches the server.
            Mode::BlackHole => {
                let mut buf = [0u8; 4096];
                tokio::select! {
                    read = client.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    changed = ctx.mode.changed() => if changed.is_err() { return reset(client) },
                    _ = ctx.cut.changed() => return reset(client),
                }
            }
            Mode::Stall => tokio::select! {
                changed = ctx.mode.changed() => if changed.is_err() { return reset(client) },
                _ = ctx.cut.changed() => return reset(client),
            },
            _ => tokio::select! {
                connected = TcpStream::connect(ctx.upstream) => match connected {
                    Ok(upstream) => break upstream,
                    // The server is down: the client sees its connection reset.
                    Err(_) => return reset(client),
                },
                _ = ctx.cut.changed() => return reset(client),
            },
        }
    };
    let _ = upstream.set_nodelay(true);
    relay(client, upstream, ctx).await;
}

/// Relays both directions until both ends have closed, one fails, or a cut.
async fn relay(mut client: TcpStream, mut upstream: TcpStream, mut ctx: ConnCtx) {
    let abort = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let seed = Rng::seed();
        let to_upstream = pump(
            client_read,
            upstream_write,
            Direction::ToUpstream,
            ctx.mode.clone(),
            Rng::new(seed),
        );
        let to_client = pump(
            upstream_read,
            client_write,
            Direction::ToClient,
            ctx.mode.clone(),
            Rng::new(seed ^ 0x5851_f42d_4c95_7f2d),
        );
        tokio::pin!(to_upstream, to_client);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                done = &mut to_upstream, if !up_done => {
                    if done.is_err() { break true; }
                    up_done = true;
                }
                done = &mut to_client, if !down_done => {
                    if done.is_err() { break true; }
                    down_done = true;
                }
                // A cut, or the proxy was dropped.
                _ = ctx.cut.changed() => break true,
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if abort {
        // One side failed or was cut: the other side sees a reset too.
        reset(client);
        reset(upstream);
    }
}

/// Relays one direction: reads chunks from `from` and forwards, delays or discards each one
/// as the current mode says. Returns `Ok` once `from` reached its end and that end was passed
/// on, or the error of either socket.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    dir: Direction,
    mut mode_rx: watch::Receiver<Mode>,
    mut rng: Rng,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    // Chunks waiting for their due time (delay mode, and anything queued behind them).
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut mode = mode_rx.borrow_and_update().clone();
    let mut proxy_alive = true;
    // Set once a byte of this direction was thrown away: nothing after it may be delivered.
    let mut lost = false;
    loop {
        let hold = mode == Mode::Stall;
        let due = queue.front().map(|(at, _)| *at);
        tokio::select! {
            biased;
            changed = mode_rx.changed(), if proxy_alive => match changed {
                Ok(()) => {
                    mode = mode_rx.borrow_and_update().clone();
                    if mode.discards(dir) {
                        // Bytes in flight are lost too.
                        lost |= !queue.is_empty();
                        queue.clear();
                    } else if lost {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "fault proxy: bytes were lost, the connection cannot go on",
                        ));
                    }
                }
                // The proxy is gone; the relay resets the connection.
                Err(_) => proxy_alive = false,
            },
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() && !hold => {
                if let Some((_, chunk)) = queue.pop_front() {
                    to.write_all(&chunk).await?;
                }
            }
            read = from.read(&mut buf), if !hold => {
                let n = read?;
                if n == 0 {
                    // End of stream: like data, it is held while the mode discards or holds
                    // this direction, then passed on after whatever is still queued.
                    while proxy_alive && (mode.discards(dir) || mode == Mode::Stall) {
                        if mode_rx.changed().await.is_err() {
                            proxy_alive = false;
                        } else {
                            mode = mode_rx.borrow_and_update().clone();
                        }
                    }
                    if lost {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "fault proxy: bytes were lost, the connection cannot go on",
                        ));
                    }
                    while let Some((at, chunk)) = queue.pop_front() {
                        sleep_until(at).await;
                        to.write_all(&chunk).await?;
                    }
                    to.shutdown().await?;
                    return Ok(());
                }
                let chunk = &buf[..n];
                let last_due = queue.back().map(|(at, _)| *at);
                match mode.fate(dir, &mut rng) {
                    Fate::Discard => lost = true,
                    Fate::Forward if last_due.is_none() => to.write_all(chunk).await?,
                    // Behind delayed chunks: queued to keep the order.
                    Fate::Forward => {
                        let at = Instant::now();
                        queue.push_back((last_due.map_or(at, |last| at.max(last)), chunk.to_vec()));
                    }
                    Fate::Delay(delay) => {
                        let at = Instant::now() + delay;
                        queue.push_back((last_due.map_or(at, |last| at.max(last)), chunk.to_vec()));
                    }
                }
            }
        }
    }
}

/// A small, fast pseudo-random generator (SplitMix64); test faults need no better.
struct Rng(u64);

impl Rng {
    /// A seed that differs between connections and runs.
    fn seed() -> u64 {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_uniform_enough() {
        let mut rng = Rng::new(42);
        let n = 10_000;
        let below_half = (0..n).filter(|_| rng.next_f64() < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
        assert!((0..n).all(|_| (0.0..1.0).contains(&rng.next_f64())));
    }

    #[test]
    fn modes_discard_the_right_directions() {
        assert!(Mode::BlackHole.discards(Direction::ToUpstream));
        assert!(Mode::BlackHole.discards(Direction::ToClient));
        assert!(!Mode::DropReplies.discards(Direction::ToUpstream));
        assert!(Mode::DropReplies.discards(Direction::ToClient));
        assert!(!Mode::PassThrough.discards(Direction::ToClient));
        assert!(!Mode::Stall.discards(Direction::ToClient));
    }

    #[test]
    fn loopback_check() {
        assert!(ensure_loopback("x", "127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(ensure_loopback("x", "127.1.2.3:1".parse().unwrap()).is_ok());
        assert!(ensure_loopback("x", "[::1]:1".parse().unwrap()).is_ok());
        assert!(ensure_loopback("x", "[::ffff:127.0.0.1]:1".parse().unwrap()).is_ok());
        let err = ensure_loopback("x", "192.0.2.1:1".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(ensure_loopback("x", "0.0.0.0:1".parse().unwrap()).is_err());
        assert!(ensure_loopback("x", "[::]:1".parse().unwrap()).is_err());
    }
}
