//! Helpers for running the real `tooz` binary against a `file://` directory of its own.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The path of the binary under test.
pub const TOOZ: &str = env!("CARGO_BIN_EXE_tooz");

/// A scratch directory with a `file://` URL into it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("coord").display());
        Env { dir, url }
    }

    /// A scratch directory, with the commands pointed at `url` instead of a `file://` one.
    pub fn with_url(url: &str) -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            url: url.to_string(),
        }
    }

    /// A path in the scratch directory (outside the driver's own directory).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tooz` with TOOZ_URL set and a clean environment for the rest, run to completion.
    pub fn tooz(&self) -> assert_cmd::Command {
        let mut std = std::process::Command::new(TOOZ);
        self.prepare(&mut std);
        let mut cmd = assert_cmd::Command::from_std(std);
        cmd.timeout(Duration::from_secs(60));
        cmd
    }

    /// `tooz` as a background process.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = std::process::Command::new(TOOZ);
        self.prepare(&mut cmd);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn prepare(&self, cmd: &mut std::process::Command) {
        cmd.env("TOOZ_URL", &self.url)
            .env("TOOZ_BIN", TOOZ)
            .env("DIR", self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("TOOZ_MEMBER");
    }
}

/// Waits until `path` exists (panics after 30 s).
pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit (panics after 60 s, killing it) and returns its status code,
/// or 128+N if it died of signal N.
pub fn wait_exit(child: &mut Child) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tooz did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to a process.
pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory effects.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// The lines a child prints on stdout, read in a thread.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line, within 30 s.
pub fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("no line within 30 s")
}

/// The text a finished assert_cmd run wrote on stderr.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `limit` for process `pid` to be gone; true if it is.
pub fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    for _ in 0..10_000 {
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Reads a number written to `path` (waiting for it to appear).
pub fn read_number(path: &Path) -> i64 {
    wait_for_file(path);
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..1_000 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Ok(n) = text.trim().parse() {
            return n;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no number in {}", path.display())
}

/// Writes a script that records its pid in `$DIR/<name>.pid` and appends a nanosecond
/// timestamp to `$DIR/<name>.beats` every 10 ms, forever; returns the command that runs it as
/// a grandchild of CMD (CMD's child runs it in the background).
pub fn grandchild_cmd(env: &Env, name: &str) -> Vec<String> {
    let script = env.path(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "echo $$ > \"$DIR/{name}.pid\"\n\
             while :; do date +%s%N >> \"$DIR/{name}.beats\"; sleep 0.01; done\n"
        ),
    )
    .unwrap();
    let inner = format!("sh {} & wait", script.display());
    vec!["sh".into(), "-c".into(), format!("sh -c '{inner}' & wait")]
}

/// The last timestamp in `$DIR/<name>.beats`.
pub fn last_beat(env: &Env, name: &str) -> i64 {
    let beats = std::fs::read_to_string(env.path(&format!("{name}.beats"))).unwrap();
    beats
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap()
}

/// True if this build of `tooz` has the driver of `scheme` (`tooz drivers --json`).
pub fn driver_built(scheme: &str) -> bool {
    let out = std::process::Command::new(TOOZ)
        .args(["drivers", "--json"])
        .output()
        .unwrap();
    let drivers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    drivers
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["scheme"] == scheme && d["availability"] == "available")
}

/// `url` if its driver is built and `address` answers; otherwise `None`, saying why on
/// stderr (a failure under `CI=true`, where the servers must run).
pub fn server_url(scheme: &str, address: &str, url: String) -> Option<String> {
    if !driver_built(scheme) {
        eprintln!("skipping {url}: the {scheme} driver is not built in (a cargo feature)");
        return None;
    }
    let up =
        std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(2))
            .is_ok();
    match (up, std::env::var("CI").as_deref()) {
        (true, _) => Some(url),
        (false, Ok("true")) => panic!("{address} is required under CI (scripts/services up)"),
        (false, _) => {
            eprintln!("skipping {url}: nothing listens on {address}");
            None
        }
    }
}
