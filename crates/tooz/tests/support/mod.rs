//! Helpers shared by integration tests: temp dirs, child processes, the Python tooz peer,
//! URL lists.
#![allow(dead_code)]

pub mod certs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (bounded) until `path` exists.
pub fn wait_for_file(path: &Path) {
    let end = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so that a reader polling
/// for `path` (see [`wait_for_file`]) never sees it half written.
pub fn write_atomically(path: &Path, text: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sends signal `sig` to child process `child`.
pub fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) on the pid of a child we spawned and have not yet waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0);
}

/// The Python interpreter with tooz installed (`TOOZ_PYTHON`, default the repository's
/// `.venv-tooz`). `None` when absent outside CI; under `CI=true` its absence is a failure.
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("TOOZ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tooz/bin/python")
        });
    if path.exists() {
        return Some(path);
    }
    if is_ci() {
        panic!(
            "Python tooz is required under CI: {} is missing (run scripts/services up python-tooz)",
            path.display()
        );
    }
    eprintln!(
        "skipping: {} is missing (scripts/services up python-tooz)",
        path.display()
    );
    None
}

/// A `Command` running the Python peer script `name` with `args`.
pub fn python_peer(python: &Path, script: &str, args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let mut cmd = Command::new(python);
    cmd.arg(script).args(args);
    cmd
}

/// Runs the Python peer to completion and returns its stdout; panics with its stderr on failure.
pub fn python_output(python: &Path, script: &str, args: &[&str]) -> String {
    let out = python_peer(python, script, args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Splits a comma-separated URL list. A piece without `://` continues the URL before it, so
/// that URLs listing several hosts (`zookeeper://h1:2181,h2:2181`) stay whole.
pub fn split_urls(list: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for piece in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match urls.last_mut() {
            Some(last) if !piece.contains("://") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_string()),
        }
    }
    urls
}

/// True under `CI=true`, where a missing server or tool is a failure, never a skip.
pub fn is_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// How tests name the driver at `url`: `scheme`, followed, when `urls` has another URL of the
/// same scheme, by its options in brackets (its address when it has none).
pub fn url_label(urls: &[String], url: &str, scheme: &str) -> String {
    let scheme_of = |u: &str| u.split("://").next().unwrap_or_default().to_string();
    let same = urls
        .iter()
        .filter(|u| scheme_of(u) == scheme_of(url))
        .count();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let label = match rest.split_once('?') {
        Some((_, options)) => options,
        None => rest,
    };
    if same > 1 && !label.is_empty() {
        format!("{scheme}[{label}]")
    } else {
        scheme.to_string()
    }
}

/// A started coordinator for `member` at `url`; panics (failing the test) saying which step
/// failed.
pub async fn started(url: &str, member: impl Into<tooz::Id>) -> tooz::Coordinator {
    let coord = tooz::Coordinator::connect(url, member)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    coord
        .start()
        .await
        .unwrap_or_else(|e| panic!("start {url}: {e}"));
    coord
}

/// A loopback TCP port free at the time of the call, for a server a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
