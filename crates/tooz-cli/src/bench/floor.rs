//! The floor: the backend's own cheapest round trip on the same kind of connection the driver
//! uses, with no tooz code in the way, so each figure can be read as a fraction of what the
//! server (or kernel) allows.
//!
//! - redis: `PING` written as RESP on one plain TCP connection;
//! - zookeeper: `exists /` on one session, the protocol written by hand on one TCP connection;
//! - memcached: the lock recipe's own meta commands on one TCP connection, with no tooz code:
//!   `ms ME` + `ma` written together (acquire and fencing counter), then `md C<cas>` (release);
//! - file: `flock(LOCK_EX)` + `flock(LOCK_UN)` on one open file in the driver's directory;
//! - ipc: a System V semaphore `semop` down + up;
//! - etcd3: the lock recipe's two transactions with the `etcd-client` crate on one gRPC client
//!   (a lease granted once beforehand): acquire = `txn(compare: both lock keys and the lock's
//!   waiter queue absent; then: put both lock keys on the lease)`, release = `txn(compare: the
//!   lock key holds our value; then: delete both lock keys)`;
//! - etcd (v2): `PUT prevExist=false` with a TTL, then `DELETE prevValue=`, on one lock key,
//!   HTTP/1.1 written by hand on one connection;
//! - etcd3+http: the same two transactions as JSON `POST /v3/kv/txn` requests, HTTP/1.1 written
//!   by hand on one keep-alive TCP connection;
//! - postgresql: the lock recipe's own two statements, prepared, on one held connection with
//!   no tooz code: `pg_try_advisory_lock` with the fencing counter bumped in the driver's
//!   table (one statement), then `pg_advisory_unlock` + `pg_notify` (one statement);
//! - mysql: the same for MySQL / MariaDB: `INSERT ... WHERE GET_LOCK(?, 0) = 1 ON DUPLICATE
//!   KEY UPDATE` (acquire and counter), then `RELEASE_LOCK`;
//! - consul: the lock recipe's two requests, HTTP/1.1 written by hand on one keep-alive
//!   connection (a session created once beforehand): acquire = `PUT /v1/txn` with one `lock`
//!   operation (its reply gives the key's `ModifyIndex`), release = `DELETE /v1/kv/<key>?cas=`
//!   that index;
//! - zake: none (an in-process server has no round trip).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::measures::{percentiles, Ctx, Figures};

/// The samples of one timed loop, which stops at a count or a time, whichever comes first.
struct Samples {
    limit: usize,
    window: Duration,
    start: Instant,
    taken: Vec<Duration>,
}

impl Samples {
    fn new(ctx: &Ctx) -> Self {
        Samples {
            limit: ctx.pick(100_000, 200),
            window: ctx.pick(Duration::from_secs(2), Duration::from_millis(100)),
            start: Instant::now(),
            taken: Vec::new(),
        }
    }

    /// Whether the loop goes on.
    fn more(&self) -> bool {
        self.taken.len() < self.limit && self.start.elapsed() < self.window
    }

    /// One operation, begun at `began`, is done.
    fn done(&mut self, began: Instant) {
        self.taken.push(began.elapsed());
    }

    /// Rate and latencies of operation `what`.
    fn figures(mut self, what: &str) -> Value {
        let per_s = self.taken.len() as f64 / self.start.elapsed().as_secs_f64();
        let mut figures = percentiles(&mut self.taken);
        figures["op"] = json!(what);
        figures["per_s"] = json!(per_s);
        figures
    }
}

/// Runs `op` in a loop bounded by count and time; returns rate and latencies.
fn timed(ctx: &Ctx, what: &str, mut op: impl FnMut() -> std::io::Result<()>) -> Figures {
    let mut samples = Samples::new(ctx);
    while samples.more() {
        let began = Instant::now();
        op().map_err(|e| format!("{what}: {e}"))?;
        samples.done(began);
    }
    Ok(samples.figures(what))
}

/// The floor of `ctx.url`'s backend, and the server's version where it tells.
pub async fn measure(ctx: &Ctx) -> (Figures, Option<String>) {
    let url = match tooz::DriverUrl::parse(&ctx.url) {
        Ok(url) => url,
        Err(e) => return (Err(e.to_string()), None),
    };
    let scheme = tooz::drivers::lookup(url.scheme())
        .map(|e| e.scheme)
        .unwrap_or("");
    match scheme {
        "redis" => redis(ctx, &url),
        "zookeeper" => zookeeper(ctx, &url),
        "memcached" => memcached(ctx, &url),
        "etcd3" => etcd3(ctx, &url).await,
        "etcd3+http" => etcd3_http(ctx, &url),
        "etcd" => etcd_v2(ctx, &url),
        "consul" => consul(ctx, &url),
        "file" => (file(ctx, &url.path()), None),
        "ipc" => (ipc(ctx), None),
        "zake" => (
            Err("in-process driver: no server, no round trip".into()),
            None,
        ),
        #[cfg(feature = "postgresql")]
        "postgresql" => sql::postgresql(ctx, &ctx.url),
        #[cfg(feature = "mysql")]
        "mysql" => sql::mysql(ctx, &ctx.url),
        other => (Err(format!("no floor written for `{other}`")), None),
    }
}

fn connect(url: &tooz::DriverUrl, default_port: u16) -> Result<TcpStream, String> {
    let host = url.host().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(default_port);
    let stream = TcpStream::connect((host, port)).map_err(|e| format!("{host}:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    Ok(stream)
}

fn redis(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    if ctx.url.contains("sentinel=") {
        return (
            Err("behind Sentinel: the floor is taken on the master's own URL".into()),
            None,
        );
    }
    let mut stream = match connect(url, 6379) {
        Ok(s) => s,
        Err(e) => return (Err(e), None),
    };
    if let Some(password) = url.password() {
        let user = url.username().unwrap_or_else(|| "default".into());
        let auth = resp(&["AUTH", &user, &password]);
        if let Err(e) = stream
            .write_all(&auth)
            .and_then(|_| read_reply(&mut stream))
        {
            return (Err(e.to_string()), None);
        }
    }
    let version = stream
        .write_all(&resp(&["INFO", "server"]))
        .and_then(|_| read_reply(&mut stream))
        .ok()
        .and_then(|info| {
            String::from_utf8_lossy(&info).lines().find_map(|l| {
                l.strip_prefix("redis_version:")
                    .map(|v| v.trim().to_string())
            })
        })
        .map(|v| format!("Redis {v}"));
    let ping = resp(&["PING"]);
    let figures = timed(ctx, "PING", || {
        stream.write_all(&ping)?;
        read_reply(&mut stream).map(|_| ())
    });
    (figures, version)
}

fn memcached(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    if ctx.url.contains("use_ssl=") {
        return (Err("over TLS: no floor written".into()), None);
    }
    let stream = match connect(url, 11211) {
        Ok(s) => s,
        Err(e) => return (Err(e), None),
    };
    let mut read = match stream.try_clone() {
        Ok(s) => std::io::BufReader::new(s),
        Err(e) => return (Err(e.to_string()), None),
    };
    let mut write = stream;
    let line = |read: &mut std::io::BufReader<TcpStream>| -> std::io::Result<String> {
        let mut line = String::new();
        std::io::BufRead::read_line(read, &mut line)?;
        Ok(line.trim_end().to_string())
    };
    let version = write
        .write_all(b"version\r\n")
        .and_then(|_| line(&mut read))
        .ok()
        .and_then(|v| v.strip_prefix("VERSION ").map(|v| format!("memcached {v}")));
    let key = format!("__TOOZ_LOCK_floor-{}", std::process::id());
    let fence = format!("__TOOZ_FENCE_floor-{}", std::process::id());
    let acquire = format!("ms {key} 5 ME T30 F1 c\r\nfloor\r\nma {fence} N0 J1 v\r\n");
    let figures = timed(ctx, "ms ME + ma, md C (acquire + release)", || {
        write.write_all(acquire.as_bytes())?;
        let added = line(&mut read)?;
        // The counter's `VA n` line and its value.
        line(&mut read)?;
        line(&mut read)?;
        let cas = added
            .split(' ')
            .find_map(|t| t.strip_prefix('c'))
            .filter(|_| added.starts_with("HD"))
            .ok_or_else(|| std::io::Error::other(format!("add: {added}")))?
            .to_string();
        write.write_all(format!("md {key} C{cas}\r\n").as_bytes())?;
        match line(&mut read)?.as_str() {
            "HD" => Ok(()),
            other => Err(std::io::Error::other(format!("md: {other}"))),
        }
    });
    let _ = write.write_all(format!("md {fence} q\r\nmn\r\n").as_bytes());
    (figures, version)
}

fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
    }
    out
}

/// Reads one RESP reply (simple string, error, integer or bulk string).
fn read_reply(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte)?;
        line.push(byte[0]);
    }
    match line[0] {
        b'$' => {
            let len: i64 = String::from_utf8_lossy(&line[1..line.len() - 2])
                .parse()
                .unwrap_or(-1);
            if len < 0 {
                return Ok(Vec::new());
            }
            let mut body = vec![0u8; len as usize + 2];
            stream.read_exact(&mut body)?;
            body.truncate(len as usize);
            Ok(body)
        }
        b'-' => Err(std::io::Error::other(
            String::from_utf8_lossy(&line).trim().to_string(),
        )),
        _ => Ok(line),
    }
}

fn zookeeper(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    let version = connect(url, 2181).ok().and_then(|mut s| {
        s.write_all(b"srvr").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("Zookeeper version: "))
            .map(|v| format!("ZooKeeper {}", v.split(['-', ',']).next().unwrap_or(v)))
    });
    let figures = (|| {
        let mut stream = connect(url, 2181)?;
        // ConnectRequest: protocol version, last zxid, timeout, session id, password.
        let mut connect = Vec::new();
        connect.extend_from_slice(&0i32.to_be_bytes());
        connect.extend_from_slice(&0i64.to_be_bytes());
        connect.extend_from_slice(&10_000i32.to_be_bytes());
        connect.extend_from_slice(&0i64.to_be_bytes());
        connect.extend_from_slice(&16i32.to_be_bytes());
        connect.extend_from_slice(&[0u8; 16]);
        zk_call(&mut stream, &connect).map_err(|e| format!("connect: {e}"))?;
        let mut xid = 0i32;
        let figures = timed(ctx, "exists /", || {
            xid += 1;
            let mut request = Vec::new();
            request.extend_from_slice(&xid.to_be_bytes());
            request.extend_from_slice(&3i32.to_be_bytes()); // exists
            request.extend_from_slice(&1i32.to_be_bytes());
            request.push(b'/');
            request.push(0); // no watch
            let reply = zk_call(&mut stream, &request)?;
            let err = reply
                .get(12..16)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match err {
                Some(0) => Ok(()),
                other => Err(std::io::Error::other(format!("exists error {other:?}"))),
            }
        });
        // closeSession
        let mut close = Vec::new();
        close.extend_from_slice(&(xid + 1).to_be_bytes());
        close.extend_from_slice(&(-11i32).to_be_bytes());
        let _ = zk_call(&mut stream, &close);
        figures
    })();
    (figures, version)
}

/// Writes one length-prefixed frame, reads one back.
fn zk_call(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut reply = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

fn file(ctx: &Ctx, dir: &str) -> Figures {
    use std::os::fd::AsRawFd;
    let path = std::path::Path::new(dir).join(format!(".{}-floor", ctx.prefix));
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fd = file.as_raw_fd();
    let figures = timed(ctx, "flock lock + unlock", || {
        // SAFETY: fd is an open descriptor owned by `file`.
        let ok =
            unsafe { libc::flock(fd, libc::LOCK_EX) == 0 && libc::flock(fd, libc::LOCK_UN) == 0 };
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    drop(file);
    let _ = std::fs::remove_file(&path);
    figures
}

fn ipc(ctx: &Ctx) -> Figures {
    // SAFETY: a private semaphore set of one, removed below; semop gets valid sembufs.
    unsafe {
        let id = libc::semget(libc::IPC_PRIVATE, 1, 0o600);
        if id < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        libc::semctl(id, 0, libc::SETVAL, 1);
        let figures = timed(ctx, "semop down + up", || {
            let mut down = libc::sembuf {
                sem_num: 0,
                sem_op: -1,
                sem_flg: 0,
            };
            let mut up = libc::sembuf {
                sem_num: 0,
                sem_op: 1,
                sem_flg: 0,
            };
            if libc::semop(id, &mut down, 1) == 0 && libc::semop(id, &mut up, 1) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        libc::semctl(id, 0, libc::IPC_RMID);
        figures
    }
}

/// What the etcd floors time: the lock recipe's acquire and release transactions.
const ETCD_OP: &str = "txn acquire + txn release";

/// The keys and value of the lock recipe's transactions for one lock (the layout of the
/// `lease_kv` recipes: Python tooz 5+'s lock key, python-etcd3's, and the waiter queue).
struct EtcdLock {
    /// `/tooz/locks<name>`.
    key: Vec<u8>,
    /// `/locks/<name>`.
    legacy_key: Vec<u8>,
    /// `/tooz/lockq/<hex name>/`, the prefix of the lock's waiters.
    queue: Vec<u8>,
    /// The end of the queue's range (the prefix's last byte plus one).
    queue_end: Vec<u8>,
    /// What a holder writes: a 32-hex-digit nonce, `:`, the member (as the driver writes).
    value: Vec<u8>,
}

impl EtcdLock {
    fn new(ctx: &Ctx) -> Self {
        let name = format!("{}-floor", ctx.prefix);
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        let queue = format!("/tooz/lockq/{hex}/").into_bytes();
        let mut queue_end = queue.clone();
        // The prefix ends with `/`: the range ends at `0`, the next byte.
        if let Some(last) = queue_end.last_mut() {
            *last += 1;
        }
        EtcdLock {
            key: format!("/tooz/locks{name}").into_bytes(),
            legacy_key: format!("/locks/{name}").into_bytes(),
            queue,
            queue_end,
            value: format!("{:032x}:{name}", u128::from(std::process::id())).into_bytes(),
        }
    }
}

/// Whether an etcd URL asks for TLS (which these floors do not speak).
fn etcd_tls(ctx: &Ctx, url: &tooz::DriverUrl) -> bool {
    url.scheme() == "etcd3+https"
        || ["ca_cert=", "cert_cert=", "cert_key="]
            .iter()
            .any(|o| ctx.url.contains(o))
}

#[cfg(not(feature = "full"))]
async fn etcd3(_ctx: &Ctx, _url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    (
        Err("built without the etcd-client crate (tooz-cli's `full` feature)".into()),
        None,
    )
}

#[cfg(feature = "full")]
async fn etcd3(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};

    if etcd_tls(ctx, url) {
        return (Err("over TLS: no floor written".into()), None);
    }
    let endpoint = format!(
        "http://{}:{}",
        url.host().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(2379)
    );
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    if let (Some(user), Some(password)) = (url.username(), url.password()) {
        options = options.with_user(user, password);
    }
    let connect = Client::connect([endpoint.as_str()], Some(options));
    let mut client = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return (Err(format!("{endpoint}: {e}")), None),
        Err(_) => return (Err(format!("{endpoint}: no connection in 10 s")), None),
    };
    let version = client
        .status()
        .await
        .ok()
        .map(|s| format!("etcd {}", s.version()));
    let lease = match client.lease_grant(60, None).await {
        Ok(granted) => granted.id(),
        Err(e) => return (Err(format!("lease grant: {e}")), version),
    };
    let lock = EtcdLock::new(ctx);
    let put = |key: &[u8]| {
        TxnOp::put(
            key,
            lock.value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    let acquire = Txn::new()
        .when([
            Compare::create_revision(lock.key.clone(), CompareOp::Equal, 0),
            Compare::create_revision(lock.legacy_key.clone(), CompareOp::Equal, 0),
            Compare::create_revision(lock.queue.clone(), CompareOp::Equal, 0)
                .with_range(lock.queue_end.clone()),
        ])
        .and_then([put(&lock.key), put(&lock.legacy_key)]);
    let release = Txn::new()
        .when([Compare::value(
            lock.key.clone(),
            CompareOp::Equal,
            lock.value.clone(),
        )])
        .and_then([
            TxnOp::delete(lock.key.clone(), None),
            TxnOp::delete(lock.legacy_key.clone(), None),
        ]);
    let mut samples = Samples::new(ctx);
    let outcome = loop {
        if !samples.more() {
            break Ok(());
        }
        let began = Instant::now();
        match client.txn(acquire.clone()).await {
            Ok(reply) if reply.succeeded() => {}
            Ok(_) => break Err("acquire: the lock was not free".to_string()),
            Err(e) => break Err(format!("acquire: {e}")),
        }
        match client.txn(release.clone()).await {
            Ok(reply) if reply.succeeded() => {}
            Ok(_) => break Err("release: the lock was not ours".to_string()),
            Err(e) => break Err(format!("release: {e}")),
        }
        samples.done(began);
    };
    // Revoking the lease deletes whatever a failed loop left behind.
    let _ = client.lease_revoke(lease).await;
    (outcome.map(|()| samples.figures(ETCD_OP)), version)
}

/// One keep-alive HTTP/1.1 connection to etcd's JSON gateway, requests and replies written
/// and read by hand.
struct Gateway {
    write: TcpStream,
    read: std::io::BufReader<TcpStream>,
    host: String,
    /// The token of etcd's authentication, sent with every request once given.
    token: Option<String>,
}

impl Gateway {
    fn connect(url: &tooz::DriverUrl) -> Result<Self, String> {
        Self::connect_to(url, 2379)
    }

    fn connect_to(url: &tooz::DriverUrl, default_port: u16) -> Result<Self, String> {
        let write = connect(url, default_port)?;
        let read = std::io::BufReader::new(write.try_clone().map_err(|e| e.to_string())?);
        let host = format!(
            "{}:{}",
            url.host().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(default_port)
        );
        Ok(Gateway {
            write,
            read,
            host,
            token: None,
        })
    }

    /// The request's bytes, made once: the loop sends them as they are.
    fn request(&self, method: &str, path: &str, body: &str) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: {token}\r\n"));
        }
        if body.starts_with('{') {
            head.push_str("Content-Type: application/json\r\n");
        } else if !body.is_empty() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// Sends `request`, reads the reply: its JSON body when the status is a success.
    fn call(&mut self, request: &[u8]) -> std::io::Result<Value> {
        self.write.write_all(request)?;
        let (status, body) = self.reply()?;
        if !(200..300).contains(&status) {
            return Err(std::io::Error::other(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut self.read, &mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end().to_string())
    }

    /// One reply: the status and the body (by `Content-Length`, or chunked).
    fn reply(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other(format!("reply: {status_line}")))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let header = self.line()?;
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            // Bounded: a reply of this size has a few chunks; stop at 64 anyway.
            for _ in 0..64 {
                let size = self.line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| std::io::Error::other(format!("chunk size: {size}")))?;
                let mut chunk = vec![0u8; size + 2];
                self.read.read_exact(&mut chunk)?;
                chunk.truncate(size);
                body.extend_from_slice(&chunk);
                if size == 0 {
                    return Ok((status, body));
                }
            }
            return Err(std::io::Error::other("reply: too many chunks"));
        }
        let length = length.ok_or_else(|| std::io::Error::other("reply: no Content-Length"))?;
        body.resize(length, 0);
        self.read.read_exact(&mut body)?;
        Ok((status, body))
    }
}

fn etcd3_http(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    if etcd_tls(ctx, url) {
        return (Err("over TLS: no floor written".into()), None);
    }
    let mut gateway = match Gateway::connect(url) {
        Ok(g) => g,
        Err(e) => return (Err(e), None),
    };
    let server = gateway.request("GET", "/version", "");
    let server = gateway
        .call(&server)
        .ok()
        .and_then(|v| v["etcdserver"].as_str().map(str::to_string));
    // The API's prefix by server version, as the driver chooses it.
    let api = match server.as_deref().map(|v| v.split('.').collect::<Vec<_>>()) {
        Some(v) if v.len() >= 2 && v[0] == "3" && v[1].parse().unwrap_or(0) <= 2 => "/v3alpha",
        Some(v) if v.len() >= 2 && v[0] == "3" && v[1] == "3" => "/v3beta",
        _ => "/v3",
    };
    let version = server.map(|v| format!("etcd {v}"));
    let figures = (|| {
        if let (Some(user), Some(password)) = (url.username(), url.password()) {
            let body = json!({"name": user, "password": password}).to_string();
            let request = gateway.request("POST", &format!("{api}/auth/authenticate"), &body);
            let reply = gateway
                .call(&request)
                .map_err(|e| format!("authenticate: {e}"))?;
            gateway.token = reply["token"].as_str().map(str::to_string);
        }
        let grant = gateway.request("POST", &format!("{api}/lease/grant"), r#"{"TTL":"60"}"#);
        let lease = gateway
            .call(&grant)
            .map_err(|e| format!("lease grant: {e}"))?["ID"]
            .as_str()
            .ok_or("lease grant: no ID in the reply")?
            .to_string();
        let lock = EtcdLock::new(ctx);
        // Created at revision 0: absent.
        let absent = |key: &[u8]| {
            let key = base64(key);
            json!({"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
        };
        let mut queue_absent = absent(&lock.queue);
        queue_absent["range_end"] = json!(base64(&lock.queue_end));
        let value = base64(&lock.value);
        let put = |key: &[u8]| {
            let put = json!({"key": base64(key), "value": value, "lease": lease});
            json!({ "request_put": put })
        };
        let acquire = json!({
            "compare": [absent(&lock.key), absent(&lock.legacy_key), queue_absent],
            "success": [put(&lock.key), put(&lock.legacy_key)],
        });
        let release = json!({
            "compare": [{"key": base64(&lock.key), "result": "EQUAL", "target": "VALUE",
                         "value": base64(&lock.value)}],
            "success": [{"request_delete_range": {"key": base64(&lock.key)}},
                        {"request_delete_range": {"key": base64(&lock.legacy_key)}}],
        });
        let txn = format!("{api}/kv/txn");
        let acquire = gateway.request("POST", &txn, &acquire.to_string());
        let release = gateway.request("POST", &txn, &release.to_string());
        let figures = timed(ctx, ETCD_OP, || {
            for (what, request) in [("acquire", &acquire), ("release", &release)] {
                if gateway.call(request)?["succeeded"] != json!(true) {
                    return Err(std::io::Error::other(format!("{what}: compare failed")));
                }
            }
            Ok(())
        });
        // Revoking the lease deletes whatever a failed loop left behind.
        let revoke = json!({ "ID": lease }).to_string();
        let revoke = gateway.request("POST", &format!("{api}/lease/revoke"), &revoke);
        let _ = gateway.call(&revoke);
        figures
    })();
    (figures, version)
}

/// etcd's v2 keys API: the driver's acquire (`PUT prevExist=false` with a TTL) and release
/// (`DELETE prevValue=`) of one lock key, HTTP/1.1 written by hand on one connection.
fn etcd_v2(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    if ctx.url.contains("protocol=https") {
        return (Err("over TLS: no floor written".into()), None);
    }
    let mut server = match Gateway::connect(url) {
        Ok(g) => g,
        Err(e) => return (Err(e), None),
    };
    let version = server.request("GET", "/version", "");
    let version = server
        .call(&version)
        .ok()
        .and_then(|v| v["etcdserver"].as_str().map(|v| format!("etcd {v}")));
    // A lock key as the driver names it (url-safe base64 of the name) and a value of the
    // driver's length (nonce, ':', member id).
    let key = base64(format!("{}-floor", ctx.prefix).as_bytes())
        .replace('+', "-")
        .replace('/', "_");
    let value = format!("{}:floor", "0".repeat(32));
    let path = format!("/v2/keys/{key}");
    let acquire = server.request(
        "PUT",
        &format!("{path}?prevExist=false"),
        &format!("value={value}&ttl=30"),
    );
    let release = server.request("DELETE", &format!("{path}?prevValue={value}"), "");
    let figures = timed(ctx, "PUT prevExist=false + DELETE prevValue", || {
        server.call(&acquire)?;
        server.call(&release).map(drop)
    });
    (figures, version)
}

fn consul(ctx: &Ctx, url: &tooz::DriverUrl) -> (Figures, Option<String>) {
    if ctx.url.contains("protocol=https") || ctx.url.contains("token=") {
        return (
            Err("over TLS or with an ACL token: no floor written".into()),
            None,
        );
    }
    let mut server = match Gateway::connect_to(url, 8500) {
        Ok(g) => g,
        Err(e) => return (Err(e), None),
    };
    let agent = server.request("GET", "/v1/agent/self", "");
    let version = server.call(&agent).ok().and_then(|v| {
        v["Config"]["Version"]
            .as_str()
            .map(|v| format!("Consul {v}"))
    });
    let create = server.request(
        "PUT",
        "/v1/session/create",
        r#"{"Name":"floor","TTL":"30s","Behavior":"delete","LockDelay":"0s"}"#,
    );
    let session = match server.call(&create) {
        Ok(reply) => reply["ID"].as_str().unwrap_or("").to_string(),
        Err(e) => return (Err(format!("session: {e}")), version),
    };
    // A lock key as the driver names it and a value of the driver's length (nonce, ':',
    // member id).
    let key = format!("tooz/locks/{}-floor", ctx.prefix);
    let value = base64(format!("{}:floor", "0".repeat(32)).as_bytes());
    let acquire = server.request(
        "PUT",
        "/v1/txn",
        &json!([{"KV": {"Verb": "lock", "Key": key, "Value": value, "Session": session}}])
            .to_string(),
    );
    let figures = timed(ctx, "PUT /v1/txn lock + DELETE ?cas", || {
        let reply = server.call(&acquire)?;
        let index = reply["Results"][0]["KV"]["ModifyIndex"]
            .as_u64()
            .ok_or_else(|| std::io::Error::other(format!("acquire: {reply}")))?;
        let release = server.request("DELETE", &format!("/v1/kv/{key}?cas={index}"), "");
        server.call(&release).map(drop)
    });
    let destroy = server.request("PUT", &format!("/v1/session/destroy/{session}"), "");
    let _ = server.call(&destroy);
    (figures, version)
}

/// Standard base64 with padding (the gateway's encoding of keys and values).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |bits, (i, &b)| bits | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The SQL floors: raw statements on one held connection, on a runtime of their own (the
/// floors are measured synchronously).
#[cfg(any(feature = "postgresql", feature = "mysql"))]
mod sql {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::super::measures::{percentiles, Ctx, Figures};

    /// Runs `op` (one acquire + release) in a loop bounded by count and time.
    async fn timed_async<F, Fut>(ctx: &Ctx, what: &str, mut op: F) -> Figures
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let (limit, window) = (
            ctx.pick(100_000, 200),
            ctx.pick(Duration::from_secs(2), Duration::from_millis(100)),
        );
        let mut samples = Vec::new();
        let start = Instant::now();
        while samples.len() < limit && start.elapsed() < window {
            let t = Instant::now();
            op().await.map_err(|e| format!("{what}: {e}"))?;
            samples.push(t.elapsed());
        }
        let per_s = samples.len() as f64 / start.elapsed().as_secs_f64();
        let mut figures = percentiles(&mut samples);
        figures["op"] = json!(what);
        figures["per_s"] = json!(per_s);
        Ok(figures)
    }

    fn on_own_runtime<T: Send + 'static>(
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        std::thread::spawn(work)
            .join()
            .map_err(|_| "the floor's thread panicked".to_string())
    }

    fn copy(ctx: &Ctx) -> Ctx {
        Ctx {
            url: ctx.url.clone(),
            short: ctx.short,
            prefix: ctx.prefix.clone(),
            in_process: ctx.in_process,
        }
    }

    /// The URL without its query (the driver's options mean nothing to a raw client).
    fn plain(url: &str) -> String {
        url.split('?').next().unwrap_or(url).to_string()
    }

    #[cfg(feature = "postgresql")]
    pub fn postgresql(ctx: &Ctx, url: &str) -> (Figures, Option<String>) {
        let (ctx, url) = (copy(ctx), plain(url));
        let outcome = on_own_runtime(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                let version: String = client
                    .query_one("SHOW server_version", &[])
                    .await
                    .map_err(|e| e.to_string())?
                    .get(0);
                // The driver's tables exist once any coordinator of the default namespace
                // has started (the floor is taken after the driver's own measures).
                let lock = client
                    .prepare(
                        "WITH g AS (SELECT pg_try_advisory_lock($1::bigint) AS got)
                         INSERT INTO tooz_locks AS t (name, token, holder, session, pid)
                         SELECT $2, 1, $2, 0, pg_backend_pid() FROM g WHERE g.got
                         ON CONFLICT (name) DO UPDATE SET token = t.token + 1
                         RETURNING t.token",
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let unlock = client
                    .prepare("SELECT pg_advisory_unlock($1::bigint), pg_notify($2::text, 'r')")
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .batch_execute("SET synchronous_commit = off")
                    .await
                    .map_err(|e| e.to_string())?;
                let key: i64 = 0x7f00_0000_0000_0000 | i64::from(std::process::id());
                let name = format!("tooz-floor-{}", std::process::id()).into_bytes();
                let channel = format!("tooz_floor_{}", std::process::id());
                let what = "pg_try_advisory_lock + counter, pg_advisory_unlock + pg_notify";
                let figures = timed_async(&ctx, what, || {
                    let (client, lock, unlock) = (&client, &lock, &unlock);
                    let (name, channel) = (&name, &channel);
                    async move {
                        client
                            .query_one(lock, &[&key, name])
                            .await
                            .map_err(|e| e.to_string())?;
                        client
                            .query_one(unlock, &[&key, channel])
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
                .await;
                let _ = client
                    .execute("DELETE FROM tooz_locks WHERE name = $1", &[&name])
                    .await;
                Ok::<_, String>((figures, Some(format!("PostgreSQL {version}"))))
            })
        });
        match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(e)) | Err(e) => (Err(e), None),
        }
    }

    #[cfg(feature = "mysql")]
    pub fn mysql(ctx: &Ctx, url: &str) -> (Figures, Option<String>) {
        use mysql_async::prelude::Queryable;
        let (ctx, url) = (copy(ctx), plain(url));
        let outcome = on_own_runtime(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let opts = mysql_async::Opts::from_url(&format!("{url}?prefer_socket=false"))
                    .map_err(|e| e.to_string())?;
                let conn = mysql_async::Conn::new(opts)
                    .await
                    .map_err(|e| e.to_string())?;
                let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
                let version: Option<String> = conn
                    .lock()
                    .await
                    .query_first("SELECT VERSION()")
                    .await
                    .map_err(|e| e.to_string())?;
                let name = format!("tooz-floor-{}", std::process::id());
                let what = "GET_LOCK + counter, RELEASE_LOCK";
                let figures = timed_async(&ctx, what, || {
                    let (conn, name) = (conn.clone(), name.clone());
                    async move {
                        let mut conn = conn.lock().await;
                        conn.exec_drop(
                            "INSERT INTO tooz_locks (name, token, holder, conn_id)
                             SELECT ?, LAST_INSERT_ID(1), ?, CONNECTION_ID() FROM DUAL
                             WHERE GET_LOCK(?, 0) = 1
                             ON DUPLICATE KEY UPDATE token = LAST_INSERT_ID(token + 1)",
                            (&name, &name, &name),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                        let _: Option<i64> = conn
                            .exec_first("SELECT RELEASE_LOCK(?)", (&name,))
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
                .await;
                let _ = conn
                    .lock()
                    .await
                    .exec_drop("DELETE FROM tooz_locks WHERE name = ?", (&name,))
                    .await;
                let conn = std::sync::Arc::try_unwrap(conn)
                    .ok()
                    .map(|c| c.into_inner());
                if let Some(conn) = conn {
                    let _ = conn.disconnect().await;
                }
                Ok::<_, String>((figures, version.map(|v| format!("MySQL/MariaDB {v}"))))
            })
        });
        match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(e)) | Err(e) => (Err(e), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"floor"), "Zmxvb3I=");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn etcd_lock_keys_follow_the_recipe() {
        let ctx = Ctx {
            url: "etcd3://127.0.0.1:2379".into(),
            short: true,
            prefix: "b".into(),
            in_process: false,
        };
        let lock = EtcdLock::new(&ctx);
        assert_eq!(lock.key, b"/tooz/locksb-floor".to_vec());
        assert_eq!(lock.legacy_key, b"/locks/b-floor".to_vec());
        assert_eq!(lock.queue, b"/tooz/lockq/622d666c6f6f72/".to_vec());
        assert_eq!(lock.queue_end, b"/tooz/lockq/622d666c6f6f720".to_vec());
        assert_eq!(lock.value.len(), 32 + 1 + "b-floor".len());
    }
}
