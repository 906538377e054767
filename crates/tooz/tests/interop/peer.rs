//! The Rust side of `peer.py`: which Python tooz serves a scheme, the probe of what its driver
//! implements, and peer processes driven line by line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest a peer may take to say its next line or to exit.
const PEER_WAIT: Duration = Duration::from_secs(30);

/// The venv (in the repository root) whose Python tooz is the reference for `scheme`: the
/// newest release that still has the driver.
pub fn venv_for(scheme: &str) -> &'static str {
    match scheme {
        "consul" | "etcd" => ".venv-tooz8", // removed in tooz 9
        "etcd3" => ".venv-tooz4",           // the gRPC driver, removed in tooz 5
        _ => ".venv-tooz",                  // tooz 9.1
    }
}

/// The interpreter of `venv_for(scheme)`.
pub fn python_for(scheme: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(venv_for(scheme))
        .join("bin/python")
}

/// What `peer.py probe` found: the tooz version and, per API part, `None` if Python's
/// driver answers it, or what it said instead (`NotImplemented: ...` or `error: ...`).
#[derive(Debug, Clone)]
pub struct Probe {
    pub version: String,
    pub parts: BTreeMap<String, Option<String>>,
}

impl Probe {
    pub async fn run(python: &Path, url: &str) -> Result<Probe, String> {
        let out = Peer::run(python, &["probe", url]).await?;
        let mut version = None;
        let mut parts = BTreeMap::new();
        for line in out.lines() {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            if key == "version" {
                version = Some(rest.to_string());
            } else {
                let answer = (rest != "ok").then(|| rest.to_string());
                parts.insert(key.to_string(), answer);
            }
        }
        let version = version.ok_or_else(|| format!("probe printed no version: {out}"))?;
        Ok(Probe { version, parts })
    }
}

/// A running `peer.py COMMAND URL ARGS...`, killed if dropped before it exits.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<tokio::task::JoinHandle<String>>,
    what: String,
}

impl Peer {
    /// Starts `peer.py` with `args` (`COMMAND URL ARGS...`).
    pub fn start(python: &Path, args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/peer.py");
        let what = format!("peer.py {}", args.join(" "));
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Some(tokio::spawn(async move {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text).await;
            text
        }));
        Peer {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            stderr,
            child,
            what,
        }
    }

    /// Runs `peer.py` to its end and returns what it printed, or why it failed.
    pub async fn run(python: &Path, args: &[&str]) -> Result<String, String> {
        Peer::start(python, args).finish().await
    }

    /// The next line the peer prints (bounded); panics if it exits or fails first.
    pub async fn line(&mut self) -> String {
        match tokio::time::timeout(PEER_WAIT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => {
                let stderr = self.stderr().await;
                panic!("{} ended early: {stderr}", self.what)
            }
            Err(_) => panic!("{} said nothing for {PEER_WAIT:?}", self.what),
        }
    }

    /// Waits for the next line, which must be `want`.
    pub async fn expect(&mut self, want: &str) {
        let line = self.line().await;
        assert_eq!(line, want, "from {}", self.what);
    }

    /// The line the peer prints within `wait`, if it prints one.
    pub async fn says_within(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.line()).await.ok()
    }

    /// Sends the peer a line (it goes on).
    pub async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{} no longer listens: {e}", self.what));
        self.stdin.flush().await.unwrap();
    }

    /// Waits (bounded) for the peer to exit; the rest of its output if it succeeded.
    pub async fn finish(mut self) -> Result<String, String> {
        let mut rest = String::new();
        let read = async {
            while let Some(line) = self.stdout.next_line().await.map_err(|e| e.to_string())? {
                rest.push_str(&line);
                rest.push('\n');
            }
            self.child.wait().await.map_err(|e| e.to_string())
        };
        let status = match tokio::time::timeout(PEER_WAIT, read).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(format!("{}: {e}", self.what)),
            Err(_) => return Err(format!("{} did not end within {PEER_WAIT:?}", self.what)),
        };
        if status.success() {
            return Ok(rest);
        }
        let stderr = self.stderr().await;
        Err(format!("{} failed ({status}): {stderr}", self.what))
    }

    /// Its error output, once it exited (waiting briefly for that).
    async fn stderr(&mut self) -> String {
        let brief = Duration::from_secs(2);
        let _ = tokio::time::timeout(brief, self.child.wait()).await;
        match self.stderr.take() {
            Some(drain) => match tokio::time::timeout(brief, drain).await {
                Ok(Ok(text)) => text,
                _ => "(its error output did not end)".into(),
            },
            None => "(error output already shown)".into(),
        }
    }
}
