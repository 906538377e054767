//! Running and supervising CMD: its own process group (handed the terminal when tooz has it),
//! signals forwarded to it, and, when what CMD runs under is lost, SIGTERM then SIGKILL. A
//! [`Watchdog`] process kills CMD's group if tooz dies or stops confirming its lease.

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::unix::process::CommandExt;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::exit::{self, Failure};
use crate::output;
use crate::watchdog::Watchdog;

/// The signals tooz forwards to CMD (and that end a wait before CMD starts).
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The name of a signal, e.g. `SIGTERM`.
pub fn signal_name(sig: libc::c_int) -> String {
    let name = match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGALRM => "SIGALRM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Signals caught by tooz. Once caught, a signal no longer has its default effect on tooz:
/// whoever holds this must act on [`Signals::recv`].
pub struct Signals {
    streams: Vec<(libc::c_int, Signal)>,
}

impl Signals {
    /// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2: what is forwarded to CMD.
    pub fn forwarded() -> Result<Signals, Failure> {
        Signals::catch(&FORWARDED)
    }

    /// SIGINT, SIGTERM and SIGHUP: what ends a watch or a membership without CMD.
    pub fn stopping() -> Result<Signals, Failure> {
        Signals::catch(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
    }

    fn catch(which: &[libc::c_int]) -> Result<Signals, Failure> {
        let streams = which
            .iter()
            .map(|&sig| Ok((sig, signal(SignalKind::from_raw(sig))?)))
            .collect::<io::Result<_>>()
            .map_err(|e| Failure::msg(format!("cannot catch signals: {e}")))?;
        Ok(Signals { streams })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> libc::c_int {
        std::future::poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return Poll::Ready(*sig);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// How CMD ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// By itself: its exit status, or 128+N for signal N.
    Finished(u8),
    /// What it ran under was lost and tooz stopped it.
    Stopped {
        /// Why (the loss), as a sentence.
        reason: String,
        /// What tooz had to do.
        how: String,
    },
}

impl Ended {
    /// The exit status and message for this ending.
    pub fn outcome(self) -> exit::Outcome {
        match self {
            Ended::Finished(status) => Ok(status),
            Ended::Stopped { reason, how } => {
                Err(Failure::new(exit::LOST, format!("{reason}; {how}")))
            }
        }
    }
}

/// What CMD runs under, as the watchdog sees it: the instant by which CMD's group must be
/// stopped unless tooz confirms its hold again.
pub struct Lease<'a> {
    /// What is held, for messages: `lock NAME`, `the leadership of GROUP`.
    pub what: String,
    /// The current deadline; `None` when the hold cannot expire while tooz is paused (it ends
    /// with tooz's process or connection, which the watchdog sees end).
    pub deadline: Box<dyn Fn() -> Option<Instant> + 'a>,
}

impl Lease<'_> {
    /// A hold with no deadline.
    pub fn none() -> Lease<'static> {
        Lease {
            what: String::new(),
            deadline: Box::new(|| None),
        }
    }
}

/// The instant by which CMD must be stopped for a hold whose backend keeps it `lease` after
/// the refresh confirmed at `confirmed`: half the lease after it, so that CMD is stopped well
/// before the backend can give the hold to another process (the other half absorbs the
/// watchdog's reaction, clock rates and the backend's rounding).
pub fn deadline(lease: Option<Duration>, confirmed: tokio::time::Instant) -> Option<Instant> {
    lease.map(|lease| confirmed.into_std() + lease / 2)
}

/// Runs `argv` with `env` added, until it ends or `lost` resolves (then CMD's process group
/// gets SIGTERM, and SIGKILL after `kill_after`). Signals in `signals` are forwarded to
/// CMD's process group meanwhile. A watchdog process kills CMD's group with SIGKILL if tooz
/// dies, or if `lease`'s deadline passes (tooz paused or cut off).
pub async fn run(
    argv: &[OsString],
    env: &[(&str, OsString)],
    kill_after: Duration,
    lost: impl Future<Output = String>,
    lease: &Lease<'_>,
    signals: &mut Signals,
) -> Result<Ended, Failure> {
    let mut reaper = Reaper::new()?;
    // Orphans of CMD's group come to tooz, so that `stop` can tell when the group is gone.
    // SAFETY: prctl with these arguments only sets a flag of this process.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let terminal = Terminal::ours();
    let job = spawn(argv, env, terminal.is_some())?;
    let mut watchdog = match Watchdog::spawn(job.pgid) {
        Ok(watchdog) => watchdog,
        Err(failure) => {
            job.signal_group(libc::SIGKILL);
            reaper.next(job.pid).await;
            return Err(failure);
        }
    };
    watchdog.set_deadline((lease.deadline)());
    if let Some(t) = &terminal {
        t.give(job.pgid);
    }
    let mut watch = Watch {
        job: &job,
        reaper: &mut reaper,
        watchdog: &mut watchdog,
        lease,
    };
    let ended = watch
        .supervise(terminal.as_ref(), kill_after, lost, signals)
        .await;
    if let Some(t) = &terminal {
        t.take_back();
    }
    let overdue = watchdog.deadline().is_some_and(|d| Instant::now() >= d);
    watchdog.done();
    match ended {
        // The watchdog killed CMD, or was about to: the hold was not confirmed in time.
        Ended::Finished(_) if overdue => Ok(Ended::Stopped {
            reason: format!(
                "{} not confirmed in time (tooz paused or cut off); it may expire",
                lease.what
            ),
            how: "CMD's process group was killed with SIGKILL".to_string(),
        }),
        ended => Ok(ended),
    }
}

/// A running CMD: its pid, which is also its process group id.
struct Job {
    pid: libc::pid_t,
    pgid: libc::pid_t,
}

impl Job {
    fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory effects; a vanished group only gives ESRCH.
        unsafe { libc::kill(-self.pgid, sig) };
    }

    /// True while a process of CMD's group remains, once the leader is reaped. Orphans of
    /// the group are reparented to tooz (a child subreaper on Linux), so their zombies are
    /// reaped here rather than counted as alive.
    fn group_alive(&self) -> bool {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer; WNOHANG never blocks.
        while unsafe { libc::waitpid(-self.pgid, &mut status, libc::WNOHANG) } > 0 {}
        // SAFETY: as above; signal 0 only checks existence.
        unsafe { libc::kill(-self.pgid, 0) == 0 }
    }
}

fn spawn(argv: &[OsString], env: &[(&str, OsString)], terminal: bool) -> Result<Job, Failure> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Failure::usage("no command given after --"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.process_group(0);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, raise, signal, tcsetpgrp, getpid).
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                // If tooz dies, the lock dies with it: so must CMD.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::raise(libc::SIGKILL);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            if terminal {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let shown = program.to_string_lossy();
    match cmd.spawn() {
        Ok(child) => {
            let pid = child.id() as libc::pid_t;
            Ok(Job { pid, pgid: pid })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Failure::new(
            exit::NOT_FOUND,
            format!("{shown}: command not found"),
        )),
        Err(e) => Err(Failure::new(
            exit::CANNOT_RUN,
            format!("cannot run {shown}: {e}"),
        )),
    }
}

/// What `waitpid` reported.
enum Event {
    Ended(u8),
    Stopped,
}

/// Waits for CMD's state changes, woken by SIGCHLD.
struct Reaper {
    sigchld: Signal,
}

impl Reaper {
    fn new() -> Result<Reaper, Failure> {
        let sigchld = signal(SignalKind::child())
            .map_err(|e| Failure::msg(format!("cannot catch SIGCHLD: {e}")))?;
        Ok(Reaper { sigchld })
    }

    /// The next change of `pid`: ended (with its status) or stopped. Cancel-safe.
    async fn next(&mut self, pid: libc::pid_t) -> Event {
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-pointer; WNOHANG never blocks.
            let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
            if got == pid {
                if libc::WIFEXITED(status) {
                    return Event::Ended(libc::WEXITSTATUS(status) as u8);
                }
                if libc::WIFSIGNALED(status) {
                    let sig = libc::WTERMSIG(status);
                    return Event::Ended(exit::SIGNALLED.saturating_add(sig as u8));
                }
                if libc::WIFSTOPPED(status) {
                    return Event::Stopped;
                }
                continue;
            }
            if got < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                // Not our child any more (cannot happen unless reaped elsewhere).
                return Event::Ended(exit::WRAPPER_FAILURE);
            }
            // A SIGCHLD may be coalesced with another child's: re-check now and then too.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.sigchld.recv()).await;
        }
    }
}

/// The controlling terminal, when tooz runs in its foreground: CMD gets it while it runs, as a
/// shell gives it to a job, so that Ctrl-C, Ctrl-Z and reads reach CMD.
struct Terminal {
    ours: libc::pid_t,
}

impl Terminal {
    fn ours() -> Option<Terminal> {
        if !output::stdin_is_tty() {
            return None;
        }
        // SAFETY: plain queries.
        let (fg, ours) = unsafe { (libc::tcgetpgrp(libc::STDIN_FILENO), libc::getpgrp()) };
        if fg != ours {
            return None;
        }
        // tooz is in the background while CMD has the terminal: taking it back must not stop us.
        // SAFETY: ignoring SIGTTOU affects only this process (CMD resets it before exec).
        unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
        Some(Terminal { ours })
    }

    fn give(&self, pgid: libc::pid_t) {
        // SAFETY: fails harmlessly if the group is gone.
        unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, pgid) };
    }

    fn take_back(&self) {
        // SAFETY: as above.
        unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, self.ours) };
    }

    /// CMD was stopped (Ctrl-Z): stop tooz too, so the shell sees the job stopped; when it is
    /// continued, give CMD the terminal back and continue it.
    fn suspend(&self, job: &Job) {
        self.take_back();
        // SAFETY: SIGTSTP has its default action (stop) in tooz.
        unsafe { libc::raise(libc::SIGTSTP) };
        self.give(job.pgid);
        job.signal_group(libc::SIGCONT);
    }
}

/// A running CMD with what watches it.
struct Watch<'j, 'l> {
    job: &'j Job,
    reaper: &'j mut Reaper,
    watchdog: &'j mut Watchdog,
    lease: &'j Lease<'l>,
}

impl Watch<'_, '_> {
    async fn supervise(
        &mut self,
        terminal: Option<&Terminal>,
        kill_after: Duration,
        lost: impl Future<Output = String>,
        signals: &mut Signals,
    ) -> Ended {
        tokio::pin!(lost);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                reason = &mut lost => return self.stop(kill_after, reason, signals).await,
                event = self.reaper.next(self.job.pid) => match event {
                    Event::Ended(status) => return Ended::Finished(status),
                    Event::Stopped => {
                        if let Some(t) = terminal {
                            t.suspend(self.job);
                        }
                    }
                },
                sig = signals.recv() => self.job.signal_group(sig),
                _ = tick.tick() => self.watchdog.set_deadline((self.lease.deadline)()),
            }
        }
    }

    /// SIGTERM to CMD's group, then SIGKILL to whatever of it remains after `kill_after`.
    async fn stop(&mut self, kill_after: Duration, reason: String, signals: &mut Signals) -> Ended {
        let job = self.job;
        job.signal_group(libc::SIGTERM);
        job.signal_group(libc::SIGCONT);
        let deadline = tokio::time::Instant::now() + kill_after;
        let mut leader_done = false;
        let mut killed = false;
        loop {
            // After SIGKILL, what remains of the group can only be zombies waiting for a reaper.
            if leader_done && (killed || !job.group_alive()) {
                break;
            }
            tokio::select! {
                event = self.reaper.next(job.pid), if !leader_done => {
                    leader_done = matches!(event, Event::Ended(_));
                }
                _ = tokio::time::sleep(Duration::from_millis(50)), if leader_done => {}
                _ = tokio::time::sleep_until(deadline), if !killed => {
                    job.signal_group(libc::SIGKILL);
                    killed = true;
                }
                sig = signals.recv() => job.signal_group(sig),
            }
        }
        let how = if killed {
            format!(
                "CMD was killed with SIGKILL after --kill-after {}",
                output::seconds(kill_after)
            )
        } else {
            "CMD was stopped with SIGTERM".to_string()
        };
        Ended::Stopped { reason, how }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Vec<OsString> {
        ["sh", "-c", script].iter().map(OsString::from).collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Runs `argv` with nothing to lose.
    async fn finish(argv: &[OsString], env: &[(&str, OsString)]) -> Result<Ended, Failure> {
        let mut signals = Signals::forwarded().unwrap();
        let never = std::future::pending::<String>();
        let lease = Lease::none();
        run(
            argv,
            env,
            Duration::from_secs(1),
            never,
            &lease,
            &mut signals,
        )
        .await
    }

    #[test]
    fn statuses_pass_through() {
        runtime().block_on(async {
            assert_eq!(
                finish(&sh("exit 7"), &[]).await.unwrap(),
                Ended::Finished(7)
            );
            let killed = finish(&sh("kill -USR1 $$"), &[]).await.unwrap();
            assert_eq!(killed, Ended::Finished(128 + libc::SIGUSR1 as u8));
            let env = [("TOOZ_TEST_VALUE", OsString::from("42"))];
            let check = sh("test \"$TOOZ_TEST_VALUE\" = 42");
            assert_eq!(finish(&check, &env).await.unwrap(), Ended::Finished(0));
            let missing = [OsString::from("/nonexistent/tooz-test")];
            let err = finish(&missing, &[]).await.unwrap_err();
            assert_eq!(err.status, exit::NOT_FOUND);
        });
    }

    #[test]
    fn a_loss_kills_the_whole_group() {
        runtime().block_on(async {
            let mut signals = Signals::forwarded().unwrap();
            let started = Instant::now();
            // The shell ignores SIGTERM and so does its background child: SIGKILL must come.
            let script = sh("trap '' TERM; sleep 30 & wait; sleep 30");
            let lost = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                "lost".to_string()
            };
            let lease = Lease::none();
            let kill_after = Duration::from_millis(300);
            let ended = run(&script, &[], kill_after, lost, &lease, &mut signals)
                .await
                .unwrap();
            match ended {
                Ended::Stopped { reason, how } => {
                    assert_eq!(reason, "lost");
                    assert!(how.contains("SIGKILL"), "{how}");
                }
                other => panic!("{other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(10));
        });
    }
}
