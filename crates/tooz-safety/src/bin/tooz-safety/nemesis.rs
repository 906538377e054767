//! The nemesis: injects one fault at a time into a running safety run, records each as a
//! `Fault` event when it starts and a `Heal` event when it ends.

use std::time::Duration;

use tooz_safety::{FaultClass, Op};
use tooz_testkit::FaultProxy;

use crate::record::Recorder;
use crate::rng::Rng;

/// The fault classes a run may select (names as on the command line).
pub const CLASSES: [(&str, FaultClass); 11] = [
    ("pause", FaultClass::Pause),
    ("pause-keepalive", FaultClass::PauseKeepalive),
    ("kill", FaultClass::Kill),
    ("lost-reply", FaultClass::LostReply),
    ("black-hole", FaultClass::BlackHole),
    ("delay", FaultClass::Delay),
    ("drop", FaultClass::Drop),
    ("server-restart", FaultClass::ServerRestart),
    ("node-kill", FaultClass::NodeKill),
    ("failover", FaultClass::Failover),
    ("session-kill", FaultClass::SessionKill),
];

/// Parses a fault class name.
pub fn parse_class(name: &str) -> Result<FaultClass, String> {
    CLASSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let known: Vec<_> = CLASSES.iter().map(|(n, _)| *n).collect();
            format!("unknown fault class `{name}` (known: {})", known.join(", "))
        })
}

/// True for the classes that act through the per-client fault proxies.
pub fn needs_proxy(class: FaultClass) -> bool {
    matches!(
        class,
        FaultClass::LostReply | FaultClass::BlackHole | FaultClass::Delay | FaultClass::Drop
    )
}

/// What the nemesis acts on.
pub trait Target {
    /// The client a process fault hits: often the current holder of a lock or leadership
    /// (the interesting victim), otherwise any.
    fn victim(&self, rng: &mut Rng) -> u32;
    /// Sends `signal` to client `process`.
    fn signal(&mut self, process: u32, signal: libc::c_int);
    /// Kills client `process` with SIGKILL and waits for it to die.
    fn kill(&mut self, process: u32);
    /// Starts client `process` again.
    fn restart(&mut self, process: u32);
    /// The fault proxy between client `process` and the server, if any.
    fn proxy(&self, process: u32) -> Option<&FaultProxy>;
    /// Runs `scripts/services ACTION MEMBER` (server faults).
    fn services(&mut self, action: &str, member: &str) -> Result<(), String>;
    /// The Redis member Sentinel currently names as the primary.
    fn primary(&mut self) -> Result<String, String>;
    /// Runs `scripts/services kill-session SERVER LOCK` (the `session-kill` fault).
    fn kill_session(&mut self, server: &str, lock: &str) -> Result<(), String>;
}

/// Server-side members for the server fault classes, from the run's options.
#[derive(Debug, Clone, Default)]
pub struct ServerMembers {
    /// The member restarted by `server-restart` (e.g. `redis-1`, `zookeeper`).
    pub restart: Option<String>,
    /// Members of a cluster, one of which `node-kill` kills (e.g. `zk3-1 zk3-2 zk3-3`).
    pub nodes: Vec<String>,
    /// Sentinel fails over (`failover`): the current primary is killed.
    pub sentinel: bool,
    /// The run's lock names (the election's as its driver names it too): `session-kill`
    /// ends the database session holding one of them.
    pub locks: Vec<String>,
}

/// Injects one fault of `class`, lasting about `length`, and heals it.
pub async fn inject(
    class: FaultClass,
    target: &mut dyn Target,
    servers: &ServerMembers,
    rec: &Recorder,
    rng: &mut Rng,
    length: Duration,
) -> Result<(), String> {
    let process = target.victim(rng);
    let fault = |detail: String, on: Option<u32>| {
        rec.info(Op::Fault {
            class,
            target: on,
            detail,
        });
    };
    let heal = |on: Option<u32>| rec.info(Op::Heal { class, target: on });
    match class {
        FaultClass::Pause => {
            fault(format!("SIGSTOP for {length:?}"), Some(process));
            target.signal(process, libc::SIGSTOP);
            tokio::time::sleep(length).await;
            target.signal(process, libc::SIGCONT);
            heal(Some(process));
        }
        FaultClass::PauseKeepalive => {
            fault(
                format!("keep-alive (heartbeats, lock refreshes) starved for {length:?}"),
                Some(process),
            );
            target.signal(process, libc::SIGUSR1);
            tokio::time::sleep(length).await;
            target.signal(process, libc::SIGUSR2);
            heal(Some(process));
        }
        FaultClass::Kill => {
            fault("SIGKILL, restarted 300 ms later".into(), Some(process));
            target.kill(process);
            tokio::time::sleep(Duration::from_millis(300)).await;
            target.restart(process);
            heal(Some(process));
        }
        FaultClass::LostReply | FaultClass::BlackHole | FaultClass::Delay | FaultClass::Drop => {
            let proxy = target
                .proxy(process)
                .ok_or("this URL has no proxy for network faults")?;
            let detail = match class {
                FaultClass::LostReply => {
                    proxy.drop_replies();
                    "requests forwarded, replies dropped"
                }
                FaultClass::BlackHole => {
                    proxy.black_hole();
                    "connection black-holed (no RST)"
                }
                FaultClass::Delay => {
                    proxy.delay(Duration::from_millis(75), Duration::from_millis(50));
                    "75 ± 50 ms delay"
                }
                _ => {
                    proxy.drop_random(0.5);
                    "50 % of chunks lost and sent again (0.2-1 s late)"
                }
            };
            fault(format!("{detail} for {length:?}"), Some(process));
            tokio::time::sleep(length).await;
            if let Some(proxy) = target.proxy(process) {
                proxy.heal();
            }
            heal(Some(process));
        }
        FaultClass::SessionKill => {
            // `scripts/services kill-session SERVER LOCK`: the server ends the session of
            // whoever holds LOCK now (`pg_terminate_backend`, `KILL CONNECTION`).
            let member = servers
                .restart
                .clone()
                .ok_or("no server to end sessions on (--server-member)")?;
            if servers.locks.is_empty() {
                return Err("no lock names for session-kill".into());
            }
            let lock = &servers.locks[rng.below(servers.locks.len() as u64) as usize];
            fault(format!("the {member} session holding {lock} ended"), None);
            target.kill_session(&member, lock)?;
            tokio::time::sleep(length.min(Duration::from_millis(300))).await;
            heal(None);
        }
        FaultClass::ServerRestart | FaultClass::NodeKill | FaultClass::Failover => {
            let (member, length, detail) = match class {
                FaultClass::ServerRestart => {
                    // A restart, not an outage: short enough that a Sentinel watching the
                    // server does not fail over (it may count a second of silence first).
                    let member = servers
                        .restart
                        .clone()
                        .ok_or("no server member to restart (--server-member)")?;
                    (member, length.min(Duration::from_millis(300)), "")
                }
                FaultClass::NodeKill => {
                    if servers.nodes.is_empty() {
                        return Err("no cluster members to kill (--nodes)".into());
                    }
                    let pick = rng.below(servers.nodes.len() as u64) as usize;
                    (servers.nodes[pick].clone(), length, "")
                }
                _ => {
                    if !servers.sentinel {
                        return Err("failover needs a Sentinel URL".into());
                    }
                    // Long enough for Sentinel to notice (2 s) and promote the replica.
                    let length = length.max(Duration::from_secs(5));
                    (target.primary()?, length, "; Sentinel fails over")
                }
            };
            fault(
                format!("{member} killed, restarted after {length:?}{detail}"),
                None,
            );
            target.services("kill", &member)?;
            tokio::time::sleep(length).await;
            target.services("restart", &member)?;
            heal(None);
        }
    }
    Ok(())
}
