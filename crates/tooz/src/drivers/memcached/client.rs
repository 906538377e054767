//! A small async memcached client: one TCP connection per server, pipelined (requests are
//! written as they come and replies matched to them in order), re-dialled on demand after a
//! failure, every call bounded by a timeout.
//!
//! A call is a batch of requests written at once and the replies it expects: a count, or
//! "until `MN`" for quiet multi-gets, or "until `END`" for `stats`. A call may carry a hook
//! that sees its replies as they are handed over, even when its caller is gone (its future
//! dropped): so that an acquisition granted to nobody can be undone.
//!
//! A refused request (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`) ends its call, with the
//! error line as its last reply, and closes the connection: it may be followed by more
//! replies than requests were sent (the server reads a refused `ms`'s value as a command),
//! so the next call dials anew.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::proto::{self, Reply};

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

/// The replies a call waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// This many replies.
    Count(usize),
    /// Replies up to and including `MN`.
    UntilNoop,
    /// Replies up to and including `END`.
    UntilEnd,
}

impl Expect {
    fn complete(self, replies: &[Reply]) -> bool {
        match self {
            Expect::Count(n) => replies.len() >= n,
            Expect::UntilNoop => matches!(replies.last(), Some(Reply::Noop)),
            Expect::UntilEnd => matches!(replies.last(), Some(Reply::End)),
        }
    }
}

/// What sees a call's replies before they are handed to its caller (who may be gone).
pub(crate) type Hook = Box<dyn FnOnce(&[Reply]) + Send>;

type Answer = Result<Vec<Reply>, CallError>;

/// One call on its way.
struct Job {
    bytes: Vec<u8>,
    expect: Expect,
    answer: oneshot::Sender<Answer>,
    hook: Option<Hook>,
}

/// A call written and waiting for its replies.
struct Waiting {
    expect: Expect,
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
                expect: job.expect,
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
            call.replies.push(reply);
            if refused.is_some() || call.expect.complete(&call.replies) {
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

    /// Sends `bytes` (one or more requests) and waits for the replies `expect` says. A
    /// refused request ends the replies with its [`Reply::Error`].
    pub(crate) async fn call(
        &self,
        bytes: Vec<u8>,
        expect: Expect,
    ) -> Result<Vec<Reply>, CallError> {
        self.call_with_hook(bytes, expect, None).await
    }

    /// As [`call`](Client::call); `hook` sees the replies when they come, whether or not
    /// the caller is still there.
    pub(crate) async fn call_with_hook(
        &self,
        bytes: Vec<u8>,
        expect: Expect,
        hook: Option<Hook>,
    ) -> Result<Vec<Reply>, CallError> {
        let deadline = tokio::time::Instant::now() + self.target.timeout;
        let conn = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| CallError::Timeout(self.target.timeout))??;
        let (answer, rx) = oneshot::channel();
        let job = Job {
            bytes,
            expect,
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
    use crate::drivers::memcached::proto::{Flag, Verb};
    use tokio::net::TcpListener;

    /// A server that answers each connection with `script`: pairs of (bytes to read first,
    /// bytes to answer), the answer written in pieces of `piece` bytes.
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

    fn get(key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        proto::request(&mut out, Verb::Get, key, &[Flag::Bare('v')], b"");
        out
    }

    #[tokio::test]
    async fn replies_split_in_pieces_are_put_together() {
        let request = get(b"k");
        let (target, _server) =
            scripted(vec![(request.len(), b"VA 5 c1\r\nhello\r\n".to_vec())], 3).await;
        let client = Client::new(target);
        let replies = client.call(request, Expect::Count(1)).await.unwrap();
        assert!(matches!(&replies[..], [Reply::Value(_, v)] if v == b"hello"));
    }

    #[tokio::test]
    async fn pipelined_calls_get_their_own_replies() {
        let (one, two) = (get(b"a"), get(b"b"));
        let answer = b"VA 1\r\nA\r\nEN\r\nMN\r\n".to_vec();
        let mut second = two.clone();
        proto::noop(&mut second);
        let (target, _server) = scripted(vec![(one.len() + second.len(), answer)], 5).await;
        let client = Arc::new(Client::new(target));
        let first = {
            let (client, one) = (client.clone(), one.clone());
            tokio::spawn(async move { client.call(one, Expect::Count(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rest = client.call(second, Expect::UntilNoop).await.unwrap();
        let first = first.await.unwrap().unwrap();
        assert!(matches!(&first[..], [Reply::Value(_, v)] if v == b"A"));
        assert_eq!(rest, vec![Reply::Miss, Reply::Noop]);
    }

    #[tokio::test]
    async fn server_errors_end_the_call_and_close_the_connection() {
        let mut request = get(b"k");
        request.extend(get(b"l"));
        let (target, _server) = scripted(
            vec![(
                request.len(),
                b"EN\r\nSERVER_ERROR out of memory\r\n".to_vec(),
            )],
            64,
        )
        .await;
        let client = Client::new(target);
        let replies = client.call(request, Expect::Count(2)).await.unwrap();
        assert_eq!(
            replies,
            [
                Reply::Miss,
                Reply::Error("SERVER_ERROR out of memory".into())
            ]
        );
        assert!(client.conn.lock().await.is_none());
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let request = get(b"k");
        let (target, _server) =
            scripted(vec![(request.len(), b"HELLO there\r\n".to_vec())], 64).await;
        let client = Client::new(target);
        let error = client.call(request, Expect::Count(1)).await.unwrap_err();
        assert!(matches!(error, CallError::Protocol(_)), "{error}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_one_fails() {
        let request = get(b"k");
        let (mut target, _server) = scripted(vec![(request.len(), Vec::new())], 64).await;
        target.timeout = Duration::from_millis(100);
        let client = Client::new(target.clone());
        let error = client
            .call(request.clone(), Expect::Count(1))
            .await
            .unwrap_err();
        assert_eq!(error, CallError::Timeout(Duration::from_millis(100)));
        // The scripted server accepts once: the next call finds nobody listening.
        let error = client.call(request, Expect::Count(1)).await.unwrap_err();
        assert!(
            matches!(error, CallError::Connection(_) | CallError::Timeout(_)),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_hook_sees_the_replies_of_a_dropped_call() {
        let request = get(b"k");
        let (target, _server) = scripted(vec![(request.len(), b"HD c5\r\n".to_vec())], 64).await;
        let client = Arc::new(Client::new(target));
        let (tx, rx) = oneshot::channel();
        let hook: Hook = Box::new(move |replies| {
            let _ = tx.send(replies.to_vec());
        });
        let call = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_with_hook(request, Expect::Count(1), Some(hook))
                    .await
            })
        };
        // The server answers 30 ms after the request: the call is dropped before that.
        tokio::time::sleep(Duration::from_millis(10)).await;
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        let replies = rx.await.expect("the hook got the replies");
        assert!(matches!(&replies[..], [Reply::Done(m)] if m.cas == Some(5)));
    }
}
