//! A small async memcached client: one TCP connection per server, pipelined (requests are
//! written as they come and replies matched to them in order), re-dialled on demand after a
//! failure, every call bounded by a timeout.
//!
//! A call is a [`Batch`] of requests written at once, each tagged so that its reply is known
//! to be its own (quiet requests for multi-gets, a `stats` at the end). A call may carry a hook
//! that sees its replies as they are handed over, even when its caller is gone (its future
//! dropped): so that an acquisition granted to nobody can be undone.
//!
//! A refused request (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`) ends its call, with the
//! error line as its last reply, and closes the connection: it may be followed by more
//! replies than requests were sent (the server reads a refused `ms`'s value as a command),
//! so the next call dials anew.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::proto::{self, Flag, Reply, Verb};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The server could not be reached, or the connection broke before the replies came.
    Connection(String),
    /// The replies did not come within the timeout.
    Timeout(Duration),
    /// The server sent something that is not the protocol.
    Protocol(proto::ProtoError),
    /// The server refused a request (its error line).
    Refused(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connection(why) => write!(f, "connection failed: {why}"),
            CallError::Timeout(after) => write!(f, "no reply within {after:?}"),
            CallError::Protocol(error) => write!(f, "protocol error: {error}"),
            CallError::Refused(line) => write!(f, "the server refused a request: {line}"),
        }
    }
}

/// Requests written together. Each meta request carries a tag of its own (the `O` flag,
/// which the server echoes), and every reply is checked against the tag its place calls for:
/// a reply that is not the one its request should get (bytes lost on the way without the
/// connection breaking, a server gone astray) breaks the connection instead of being handed
/// to the wrong caller.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    check: Check,
}

/// The replies a call waits for.
#[derive(Debug, Default, Clone)]
struct Check {
    /// Tags of the requests that always answer, in order.
    counted: VecDeque<u64>,
    /// Tags of quiet requests, which answer only when they have something to say.
    quiet: Vec<u64>,
    /// A classic `stats` at the end: `STAT` lines up to `END`.
    stats: bool,
}

/// A tag no other request of this process carries.
fn next_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Batch {
    /// One request (see [`push`](Batch::push)).
    pub(crate) fn one(verb: Verb, key: &[u8], flags: &[Flag], data: &[u8]) -> Batch {
        let mut batch = Batch::default();
        batch.push(verb, key, flags, data);
        batch
    }

    fn write(&mut self, verb: Verb, key: &[u8], flags: &[Flag], data: &[u8]) -> u64 {
        assert!(!self.check.stats, "stats must come last in a batch");
        let tag = next_tag();
        let mut all = flags.to_vec();
        all.push(Flag::Num('O', tag));
        proto::request(&mut self.bytes, verb, key, &all, data);
        tag
    }

    /// Adds a request that always answers.
    pub(crate) fn push(&mut self, verb: Verb, key: &[u8], flags: &[Flag], data: &[u8]) {
        let tag = self.write(verb, key, flags, data);
        self.check.counted.push_back(tag);
    }

    /// Adds a quiet request (the `q` flag is added here), which may not answer; a request
    /// that always answers must follow it. Returns its tag, which its reply carries.
    pub(crate) fn push_quiet(
        &mut self,
        verb: Verb,
        key: &[u8],
        flags: &[Flag],
        data: &[u8],
    ) -> u64 {
        let mut all = flags.to_vec();
        all.push(Flag::Bare('q'));
        let tag = self.write(verb, key, &all, data);
        self.check.quiet.push(tag);
        tag
    }

    /// Adds a classic `stats`, which must come last, after a request that always answers.
    pub(crate) fn stats(&mut self) {
        assert!(
            !self.check.counted.is_empty(),
            "stats needs a tagged request before it"
        );
        proto::stats(&mut self.bytes);
        self.check.stats = true;
    }

    /// The tags of the requests that always answer, in order (for tests).
    #[cfg(test)]
    fn tags(&self) -> Vec<u64> {
        self.check.counted.iter().copied().collect()
    }
}

fn tag_of(reply: &Reply) -> Option<u64> {
    let opaque = match reply {
        Reply::Done(m)
        | Reply::Value(m, _)
        | Reply::NotStored(m)
        | Reply::Exists(m)
        | Reply::NotFound(m)
        | Reply::Miss(m) => m.opaque.as_deref()?,
        _ => return None,
    };
    std::str::from_utf8(opaque).ok()?.parse().ok()
}

impl Check {
    /// Takes `reply` as the next one: whether the call is complete, or the reply is not
    /// this call's.
    fn accept(&mut self, reply: &Reply) -> Result<bool, proto::ProtoError> {
        if let Reply::Error(_) = reply {
            return Ok(true);
        }
        if self.counted.is_empty() && self.stats {
            return match reply {
                Reply::Stat(..) => Ok(false),
                Reply::End => Ok(true),
                _ => Err(proto::ProtoError::Desync("a reply inside stats".into())),
            };
        }
        let tag = tag_of(reply);
        if tag.is_some() && tag == self.counted.front().copied() {
            self.counted.pop_front();
        } else if !tag.is_some_and(|t| self.quiet.contains(&t)) {
            return Err(proto::ProtoError::Desync(format!(
                "a reply tagged {tag:?} where {:?} was due",
                self.counted.front()
            )));
        }
        Ok(self.counted.is_empty() && !self.stats)
    }
}

/// What sees a call's replies before they are handed to its caller (who may be gone).
pub(crate) type Hook = Box<dyn FnOnce(&[Reply]) + Send>;

type Answer = Result<Vec<Reply>, CallError>;

/// One call on its way.
struct Job {
    bytes: Vec<u8>,
    check: Check,
    answer: oneshot::Sender<Answer>,
    hook: Option<Hook>,
}

/// A call written and waiting for its replies.
struct Waiting {
    check: Check,
    replies: Vec<Reply>,
    answer: oneshot::Sender<Answer>,
    hook: Option<Hook>,
}

impl Waiting {
    fn finish(mut self) {
        let replies = std::mem::take(&mut self.replies);
        if let Some(hook) = self.hook {
            hook(&replies);
        }
        let _ = self.answer.send(Ok(replies));
    }
}

/// One open connection: its writer and reader tasks.
struct Conn {
    jobs: mpsc::UnboundedSender<Job>,
    tasks: [JoinHandle<()>; 2],
}

impl Conn {
    fn alive(&self) -> bool {
        !self.jobs.is_closed() && !self.tasks.iter().any(JoinHandle::is_finished)
    }

    fn close(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type Boxed = Box<dyn Stream>;

/// Calls waiting for replies, in the order they were written.
type Queue = Arc<Mutex<VecDeque<Waiting>>>;

fn fail_all(queue: &Queue, why: &CallError) {
    let waiting: Vec<Waiting> = queue.lock().unwrap().drain(..).collect();
    for call in waiting {
        let _ = call.answer.send(Err(why.clone()));
    }
}

/// Writes jobs as they come (several at once when they queue up).
async fn write_loop(
    mut write: WriteHalf<Boxed>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    queue: Queue,
) {
    let mut batch = Vec::new();
    while let Some(job) = jobs.recv().await {
        batch.clear();
        let mut next = Some(job);
        while let Some(job) = next {
            batch.extend_from_slice(&job.bytes);
            queue.lock().unwrap().push_back(Waiting {
                check: job.check,
                replies: Vec::new(),
                answer: job.answer,
                hook: job.hook,
            });
            next = if batch.len() < 64 * 1024 {
                jobs.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(error) = write.write_all(&batch).await {
            fail_all(&queue, &CallError::Connection(error.to_string()));
            return;
        }
    }
}

/// Reads replies and hands them to the calls, in order.
async fn read_loop(mut read: ReadHalf<Boxed>, queue: Queue) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let why = 'conn: loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) => break CallError::Connection("closed by the server".into()),
            Ok(n) => n,
            Err(error) => break CallError::Connection(error.to_string()),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            let reply = match proto::parse(&buf[used..]) {
                Ok(Some((reply, len))) => {
                    used += len;
                    reply
                }
                Ok(None) => break,
                Err(error) => break 'conn CallError::Protocol(error),
            };
            let mut queue_now = queue.lock().unwrap();
            let Some(call) = queue_now.front_mut() else {
                break 'conn CallError::Protocol(proto::ProtoError::UnknownReply(
                    "a reply nobody asked for".into(),
                ));
            };
            let refused = match &reply {
                Reply::Error(line) => Some(line.clone()),
                _ => None,
            };
            let complete = match call.check.accept(&reply) {
                Ok(complete) => complete,
                Err(error) => break 'conn CallError::Protocol(error),
            };
            call.replies.push(reply);
            if complete {
                let call = queue_now.pop_front().expect("a front call");
                drop(queue_now);
                call.finish();
            }
            if let Some(line) = refused {
                break 'conn CallError::Refused(line);
            }
        }
        buf.drain(..used);
    };
    fail_all(&queue, &why);
}

/// TLS to the server: the connector and the name the server's certificate is checked
/// against.
#[cfg(feature = "memcached-tls")]
#[derive(Clone)]
pub(crate) struct TlsTarget {
    pub connector: tokio_rustls::TlsConnector,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Where the client connects, and its bounds.
#[derive(Clone)]
pub(crate) struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Longest a call may wait for its replies.
    pub timeout: Duration,
    /// Longest a connection attempt may take (TLS handshake included).
    pub connect_timeout: Duration,
    /// TLS, if on.
    #[cfg(feature = "memcached-tls")]
    pub tls: Option<TlsTarget>,
}

impl Target {
    /// A plain TCP target.
    pub(crate) fn tcp(
        host: &str,
        port: u16,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Target {
        Target {
            host: host.to_string(),
            port,
            timeout,
            connect_timeout,
            #[cfg(feature = "memcached-tls")]
            tls: None,
        }
    }

    async fn dial(&self) -> Result<Boxed, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        #[cfg(feature = "memcached-tls")]
        if let Some(tls) = &self.tls {
            let stream = tls
                .connector
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            return Ok(Box::new(stream));
        }
        Ok(Box::new(tcp))
    }
}

/// A client of one memcached server. Cheap to share; calls from many tasks are pipelined on
/// one connection.
pub(crate) struct Client {
    target: Target,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl Client {
    /// A client of `target`; no I/O until the first call.
    pub(crate) fn new(target: Target) -> Client {
        Client {
            target,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Arc<Conn>, CallError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.alive()) {
            return Ok(conn.clone());
        }
        let dial = tokio::time::timeout(self.target.connect_timeout, self.target.dial());
        let stream = match dial.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return Err(CallError::Connection(format!(
                    "{}:{}: {error}",
                    self.target.host, self.target.port
                )))
            }
            Err(_) => {
                return Err(CallError::Connection(format!(
                    "{}:{}: no connection within {:?}",
                    self.target.host, self.target.port, self.target.connect_timeout
                )))
            }
        };
        let (read, write) = tokio::io::split(stream);
        let (jobs, rx) = mpsc::unbounded_channel();
        let queue: Queue = Arc::default();
        let conn = Arc::new(Conn {
            jobs,
            tasks: [
                tokio::spawn(write_loop(write, rx, queue.clone())),
                tokio::spawn(read_loop(read, queue)),
            ],
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Closes the connection `conn` if it is still the current one (the next call dials).
    async fn drop_conn(&self, conn: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            slot.take();
        }
        conn.close();
    }

    /// Sends `batch` and waits for its replies. A refused request ends the replies with its
    /// [`Reply::Error`].
    pub(crate) async fn call(&self, batch: Batch) -> Result<Vec<Reply>, CallError> {
        self.call_with_hook(batch, None).await
    }

    /// As [`call`](Client::call); `hook` sees the replies when they come, whether or not
    /// the caller is still there.
    pub(crate) async fn call_with_hook(
        &self,
        batch: Batch,
        hook: Option<Hook>,
    ) -> Result<Vec<Reply>, CallError> {
        let deadline = tokio::time::Instant::now() + self.target.timeout;
        let conn = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| CallError::Timeout(self.target.timeout))??;
        let (answer, rx) = oneshot::channel();
        let job = Job {
            bytes: batch.bytes,
            check: batch.check,
            answer,
            hook,
        };
        if conn.jobs.send(job).is_err() {
            self.drop_conn(&conn).await;
            return Err(CallError::Connection("the connection closed".into()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(replies))) => {
                if matches!(replies.last(), Some(Reply::Error(_))) {
                    self.drop_conn(&conn).await;
                }
                Ok(replies)
            }
            Ok(Ok(Err(error))) => {
                self.drop_conn(&conn).await;
                Err(error)
            }
            Ok(Err(_)) => {
                self.drop_conn(&conn).await;
                Err(CallError::Connection("the connection closed".into()))
            }
            Err(_) => {
                // A connection that does not answer in time is not trusted again.
                self.drop_conn(&conn).await;
                Err(CallError::Timeout(self.target.timeout))
            }
        }
    }

    /// Closes the connection.
    pub(crate) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            conn.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers one connection with `script`: pairs of (bytes to read first,
    /// bytes to answer, 30 ms later), the answer written in pieces of `piece` bytes.
    async fn scripted(script: Vec<(usize, Vec<u8>)>, piece: usize) -> (Target, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            for (want, answer) in script {
                let mut got = vec![0u8; want];
                if socket.read_exact(&mut got).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                for part in answer.chunks(piece.max(1)) {
                    socket.write_all(part).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        });
        let target = Target::tcp(
            "127.0.0.1",
            port,
            Duration::from_secs(2),
            Duration::from_secs(2),
        );
        (target, server)
    }

    fn get(key: &[u8]) -> Batch {
        Batch::one(Verb::Get, key, &[Flag::Bare('v')], b"")
    }

    #[tokio::test]
    async fn replies_split_in_pieces_are_put_together() {
        let batch = get(b"k");
        let answer = format!("VA 5 c1 O{}\r\nhello\r\n", batch.tags()[0]);
        let (target, _server) = scripted(vec![(batch.bytes.len(), answer.into_bytes())], 3).await;
        let client = Client::new(target);
        let replies = client.call(batch).await.unwrap();
        assert!(matches!(&replies[..], [Reply::Value(_, v)] if v == b"hello"));
    }

    #[tokio::test]
    async fn pipelined_calls_get_their_own_replies() {
        let one = get(b"a");
        let mut two = Batch::default();
        let quiet = two.push_quiet(Verb::Get, b"b", &[Flag::Bare('v')], b"");
        two.push(Verb::Get, b"c", &[], b"");
        let answer = format!(
            "VA 1 O{}\r\nA\r\nVA 1 O{quiet}\r\nB\r\nEN O{}\r\n",
            one.tags()[0],
            two.tags()[0]
        );
        let total = one.bytes.len() + two.bytes.len();
        let (target, _server) = scripted(vec![(total, answer.into_bytes())], 5).await;
        let client = Arc::new(Client::new(target));
        let first = {
            let client = client.clone();
            tokio::spawn(async move { client.call(one).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest = client.call(two).await.unwrap();
        let first = first.await.unwrap().unwrap();
        assert!(matches!(&first[..], [Reply::Value(_, v)] if v == b"A"));
        assert!(matches!(&rest[..], [Reply::Value(_, v), Reply::Miss(_)] if v == b"B"));
    }

    #[tokio::test]
    async fn a_reply_that_is_not_the_calls_breaks_the_connection() {
        let (one, two) = (get(b"a"), get(b"b"));
        // The first request was lost on the way: the server answers only the second.
        let answer = format!("EN O{}\r\n", two.tags()[0]);
        let total = one.bytes.len() + two.bytes.len();
        let (target, _server) = scripted(vec![(total, answer.into_bytes())], 64).await;
        let client = Arc::new(Client::new(target));
        let first = {
            let client = client.clone();
            tokio::spawn(async move { client.call(one).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = client.call(two).await;
        let first = first.await.unwrap();
        assert!(
            matches!(
                first,
                Err(CallError::Protocol(proto::ProtoError::Desync(_)))
            ),
            "{first:?}"
        );
        assert!(second.is_err(), "{second:?}");
    }

    #[tokio::test]
    async fn stats_follow_a_tagged_request() {
        let mut batch = get(b"k");
        batch.stats();
        let answer = format!("EN O{}\r\nSTAT pid 7\r\nEND\r\n", batch.tags()[0]);
        let (target, _server) = scripted(vec![(batch.bytes.len(), answer.into_bytes())], 4).await;
        let client = Client::new(target);
        let replies = client.call(batch).await.unwrap();
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[1], Reply::Stat("pid".into(), "7".into()));
    }

    #[tokio::test]
    async fn server_errors_end_the_call_and_close_the_connection() {
        let mut batch = get(b"k");
        batch.push(Verb::Get, b"l", &[Flag::Bare('v')], b"");
        let answer = format!("EN O{}\r\nSERVER_ERROR out of memory\r\n", batch.tags()[0]);
        let (target, _server) = scripted(vec![(batch.bytes.len(), answer.into_bytes())], 64).await;
        let client = Client::new(target);
        let replies = client.call(batch).await.unwrap();
        assert!(
            matches!(&replies[..], [Reply::Miss(_), Reply::Error(e)] if e == "SERVER_ERROR out of memory")
        );
        assert!(client.conn.lock().await.is_none());
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let batch = get(b"k");
        let (target, _server) =
            scripted(vec![(batch.bytes.len(), b"HELLO there\r\n".to_vec())], 64).await;
        let client = Client::new(target);
        let error = client.call(batch).await.unwrap_err();
        assert!(matches!(error, CallError::Protocol(_)), "{error}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_one_fails() {
        let batch = get(b"k");
        let (mut target, _server) = scripted(vec![(batch.bytes.len(), Vec::new())], 64).await;
        target.timeout = Duration::from_millis(100);
        let client = Client::new(target.clone());
        let error = client.call(batch).await.unwrap_err();
        assert_eq!(error, CallError::Timeout(Duration::from_millis(100)));
        // The scripted server accepts once: the next call finds nobody listening.
        let error = client.call(get(b"k")).await.unwrap_err();
        assert!(
            matches!(error, CallError::Connection(_) | CallError::Timeout(_)),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_hook_sees_the_replies_of_a_dropped_call() {
        let batch = get(b"k");
        let answer = format!("HD c5 O{}\r\n", batch.tags()[0]);
        let (target, _server) = scripted(vec![(batch.bytes.len(), answer.into_bytes())], 64).await;
        let client = Arc::new(Client::new(target));
        let (tx, rx) = oneshot::channel();
        let hook: Hook = Box::new(move |replies| {
            let _ = tx.send(replies.to_vec());
        });
        let call = {
            let client = client.clone();
            tokio::spawn(async move { client.call_with_hook(batch, Some(hook)).await })
        };
        // The server answers 30 ms after the request: the call is dropped before that.
        tokio::time::sleep(Duration::from_millis(10)).await;
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        let replies = rx.await.expect("the hook got the replies");
        assert!(matches!(&replies[..], [Reply::Done(m)] if m.cas == Some(5)));
    }
}
