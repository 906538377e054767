//! The watchdog: a small process that stops CMD's process group when `tooz` can no longer
//! vouch for what CMD runs under.
//!
//! `tooz` starts it (as `tooz watchdog PGID`, in a process group of its own) right after CMD
//! and keeps the write end of a pipe to its stdin. The watchdog sends SIGKILL to CMD's process
//! group when
//!
//! - the pipe closes without `done`: `tooz` died, whatever killed it (SIGKILL included), so
//!   what CMD ran under is gone with it;
//! - a deadline given by `tooz` passes: `tooz` has not confirmed that it still holds its lease
//!   (its lock expires unless refreshed) for too long, as when the `tooz` process is paused.
//!
//! The protocol is text lines: `deadline NANOS` (an instant of [`now`]'s clock), `deadline -`
//! (none) and `done` (CMD ended; exit without killing anything).

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ExitCode};
use std::time::{Duration, Instant};

use crate::exit::Failure;

/// Nanoseconds on the clock the watchdog and `tooz` share: CLOCK_BOOTTIME on Linux (it keeps
/// counting while the machine is suspended, as a lease on a server does), CLOCK_MONOTONIC
/// elsewhere.
pub fn now() -> u64 {
    #[cfg(target_os = "linux")]
    let clock = libc::CLOCK_BOOTTIME;
    #[cfg(not(target_os = "linux"))]
    let clock = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; the clock exists on this platform.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// `at` (an instant of this process) on the shared clock.
fn shared(at: Instant) -> u64 {
    let base = now();
    let here = Instant::now();
    match at.checked_duration_since(here) {
        Some(ahead) => base.saturating_add(ahead.as_nanos() as u64),
        None => base.saturating_sub(here.duration_since(at).as_nanos() as u64),
    }
}

/// `tooz`'s end of a running watchdog.
pub struct Watchdog {
    child: Option<Child>,
    pipe: Option<ChildStdin>,
    deadline: Option<Instant>,
}

impl Watchdog {
    /// Unit tests run inside the test harness, which is not `tooz`: no watchdog process there
    /// (the tests of the real binary cover it).
    #[cfg(test)]
    pub fn spawn(_pgid: libc::pid_t) -> Result<Watchdog, Failure> {
        Ok(Watchdog {
            child: None,
            pipe: None,
            deadline: None,
        })
    }

    /// Starts a watchdog for the process group `pgid`.
    #[cfg(not(test))]
    pub fn spawn(pgid: libc::pid_t) -> Result<Watchdog, Failure> {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        // Nothing of tooz's environment, streams or working directory: the watchdog holds no
        // caller's pipe open and no directory busy, and no variable can stop it parsing.
        let mut cmd = Command::new(own_executable()?);
        cmd.arg("watchdog")
            .arg(pgid.to_string())
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::msg(format!("cannot start the watchdog of CMD: {e}")))?;
        let pipe = child.stdin.take();
        let ready = child.stdout.take().is_some_and(ready);
        let watchdog = Watchdog {
            child: Some(child),
            pipe,
            deadline: None,
        };
        if !ready {
            watchdog.done();
            return Err(Failure::msg("the watchdog of CMD did not start"));
        }
        Ok(watchdog)
    }

    /// Sets the instant by which CMD's group must be stopped unless a later one is given.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        if deadline == self.deadline {
            return;
        }
        self.deadline = deadline;
        let line = match deadline {
            Some(at) => format!("deadline {}\n", shared(at)),
            None => "deadline -\n".to_string(),
        };
        self.send(&line);
    }

    /// The last deadline given.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn send(&mut self, line: &str) {
        let Some(pipe) = &mut self.pipe else { return };
        if let Err(error) = pipe.write_all(line.as_bytes()) {
            tracing::warn!(%error, "the watchdog of CMD is gone");
            self.pipe = None;
        }
    }

    /// CMD has ended: the watchdog exits without stopping anything.
    pub fn done(mut self) {
        self.send("done\n");
        self.pipe = None;
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
    }
}

/// True once the watchdog says `ready` on `out`, within 10 s.
#[cfg(not(test))]
fn ready(mut out: std::process::ChildStdout) -> bool {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + Duration::from_secs(10);
    // A signal (SIGCHLD from CMD, say) interrupts poll: try again until the deadline.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fd = libc::pollfd {
            fd: out.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let got = unsafe { libc::poll(&mut fd, 1, left.as_millis().max(1) as libc::c_int) };
        if got > 0 {
            break;
        }
        if got == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
    let mut line = [0u8; 6];
    out.read_exact(&mut line).is_ok() && &line == b"ready\n"
}

/// The path to run this program again: /proc/self/exe on Linux (which works even if the file
/// was replaced since), else what the OS reports.
#[cfg(not(test))]
fn own_executable() -> Result<std::path::PathBuf, Failure> {
    #[cfg(target_os = "linux")]
    return Ok("/proc/self/exe".into());
    #[cfg(not(target_os = "linux"))]
    std::env::current_exe().map_err(|e| Failure::msg(format!("cannot find tooz itself: {e}")))
}

/// What the watchdog process was told to do.
#[derive(Debug, PartialEq, Eq)]
enum Order {
    Deadline(Option<u64>),
    Done,
}

fn parse(line: &str) -> Option<Order> {
    match line.trim().split_once(' ') {
        None if line.trim() == "done" => Some(Order::Done),
        Some(("deadline", "-")) => Some(Order::Deadline(None)),
        Some(("deadline", at)) => at.parse().ok().map(|at| Order::Deadline(Some(at))),
        _ => None,
    }
}

/// The watchdog process: reads orders on stdin until `done`; kills `pgid` with SIGKILL when
/// stdin closes first or a deadline passes.
pub fn run(pgid: libc::pid_t) -> ExitCode {
    if pgid <= 1 {
        return ExitCode::from(crate::exit::USAGE);
    }
    // Terminal and hang-up signals are for CMD and tooz, not for the watchdog.
    for sig in [
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGPIPE,
    ] {
        // SAFETY: ignoring a signal has no memory effects.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    if io::stdout().write_all(b"ready\n").is_err() || io::stdout().flush().is_err() {
        return ExitCode::from(crate::exit::FAILURE);
    }
    let mut stdin = io::stdin().lock();
    let mut pending = Vec::new();
    let mut deadline: Option<u64> = None;
    loop {
        let wait = deadline.map(|d| Duration::from_nanos(d.saturating_sub(now())));
        if wait == Some(Duration::ZERO) || !readable(wait) {
            if deadline.is_some_and(|d| now() >= d) {
                break;
            }
            continue;
        }
        let mut buf = [0u8; 512];
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match parse(&String::from_utf8_lossy(&line)) {
                Some(Order::Done) => return ExitCode::SUCCESS,
                Some(Order::Deadline(at)) => deadline = at,
                None => {}
            }
        }
    }
    // SAFETY: kill has no memory effects; a vanished group only gives ESRCH.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    ExitCode::SUCCESS
}

/// Waits until stdin is readable (or closed), at most `wait` (forever without one); false on
/// a timeout.
fn readable(wait: Option<Duration>) -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // Bounded so that a clock jump or a long wait is re-checked now and then.
    let ms = wait.map_or(1000, |w| w.as_millis().clamp(1, 1000) as libc::c_int);
    // SAFETY: one valid pollfd.
    let got = unsafe { libc::poll(&mut fd, 1, ms) };
    got > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parse() {
        assert_eq!(parse("done\n"), Some(Order::Done));
        assert_eq!(parse("deadline -\n"), Some(Order::Deadline(None)));
        assert_eq!(parse("deadline 42\n"), Some(Order::Deadline(Some(42))));
        assert_eq!(parse("deadline soon\n"), None);
        assert_eq!(parse("frobnicate\n"), None);
    }

    #[test]
    fn instants_map_onto_the_shared_clock() {
        let later = Instant::now() + Duration::from_secs(2);
        let gap = shared(later).saturating_sub(now());
        assert!(
            (1_900_000_000..=2_000_000_000).contains(&gap),
            "{gap} ns ahead"
        );
    }
}
