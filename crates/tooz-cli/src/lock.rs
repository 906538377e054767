//! `tooz lock NAME -- CMD...`: run CMD while holding a lock.

use std::time::Duration;

use tokio::time::Instant;
use tooz::{Coordinator, Error, Lock, LockGuard};

use crate::child::{self, Lease, Signals};
use crate::cli::{Global, Hold, LockArgs};
use crate::connect;
use crate::exit::{self, Failure, Outcome};
use crate::output::{self, Spinner};

/// Runs `tooz lock`.
pub async fn run(global: &Global, args: &LockArgs) -> Outcome {
    let url = connect::with_ttl(&connect::url(global)?, args.ttl)?;
    let coord = connect::start_shared(&url, &connect::member(global)).await?;
    let result = locked(&coord, args).await;
    connect::stop(&coord).await;
    result
}

async fn locked(coord: &Coordinator, args: &LockArgs) -> Outcome {
    let mut signals = Signals::forwarded()?;
    let lock = coord.lock(args.name.as_str());
    let guard = tokio::select! {
        guard = acquire(&lock, args) => guard?,
        sig = signals.recv() => return Err(interrupted(sig, &format!("lock {}", args.name))),
    };
    let env = [
        ("TOOZ_LOCK_NAME", args.name.clone().into()),
        (
            "TOOZ_FENCING_TOKEN",
            guard.fencing_token().to_string().into(),
        ),
    ];
    let lost = lost(&guard, &args.name, &args.hold);
    let lease = Lease {
        what: format!("lock {}", args.name),
        deadline: Box::new(|| child::deadline(guard.lease(), guard.confirmed_at())),
    };
    let ended = child::run(
        &args.command,
        &env,
        args.hold.kill_after,
        lost,
        &lease,
        &mut signals,
    )
    .await;
    drop(lease);
    let lost_late = guard.lost_reason();
    if let Err(error) = guard.release().await {
        output::error_line(&format!("releasing lock {}: {error}", args.name));
    }
    match (ended?, lost_late) {
        // CMD ended as the lock went: its work may not have been covered by the lock.
        (child::Ended::Finished(_), Some(reason)) => Err(Failure::new(
            exit::LOST,
            format!("lock {} lost ({reason}) as CMD ended", args.name),
        )),
        (ended, _) => ended.outcome(),
    }
}

/// Waits for the lock as the options say, with a spinner on a terminal.
async fn acquire(lock: &Lock, args: &LockArgs) -> Result<LockGuard, Failure> {
    if let Some(guard) = lock.try_acquire().await? {
        return Ok(guard);
    }
    let holder = holder_text(lock).await;
    if args.wait.no_wait {
        return Err(Failure::new(
            exit::BUSY,
            format!("lock {} is held{holder}", lock.name()),
        ));
    }
    let _spinner = Spinner::start(format!("waiting for lock {}{holder}", lock.name()));
    match args.wait.timeout {
        None => Ok(lock.acquire().await?),
        Some(timeout) => {
            let deadline = Instant::now() + timeout;
            match lock.acquire_timeout(timeout).await {
                Ok(guard) => Ok(guard),
                Err(Error::OperationTimedOut(_)) if Instant::now() >= deadline => {
                    Err(Failure::new(
                        exit::BUSY,
                        format!(
                            "lock {} still held after --timeout {}{}",
                            lock.name(),
                            output::seconds(timeout),
                            holder_text(lock).await
                        ),
                    ))
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}

/// ` (by MEMBER)` when the driver knows the holder.
async fn holder_text(lock: &Lock) -> String {
    match lock.holder().await {
        Ok(Some(holder)) => format!(" (by {holder})"),
        _ => String::new(),
    }
}

/// Resolves with a sentence when the lock is lost or `--max-hold` passes.
async fn lost(guard: &LockGuard, name: &str, hold: &Hold) -> String {
    tokio::select! {
        reason = guard.lost() => format!("lock {name} lost: {reason}"),
        held = max_hold(hold.max_hold) => {
            format!("lock {name} held longer than --max-hold {}", output::seconds(held))
        }
    }
}

/// Sleeps for `limit`, or forever without one; returns the limit.
pub async fn max_hold(limit: Option<Duration>) -> Duration {
    match limit {
        Some(limit) => {
            tokio::time::sleep(limit).await;
            limit
        }
        None => std::future::pending().await,
    }
}

/// The failure of a wait ended by a signal: 128+N, as if the signal had killed tooz.
pub fn interrupted(sig: libc::c_int, waiting_for: &str) -> Failure {
    Failure::new(
        exit::SIGNALLED.saturating_add(sig as u8),
        format!(
            "interrupted by {} while waiting for {waiting_for}",
            child::signal_name(sig)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn args(name: &str, script: &str) -> LockArgs {
        LockArgs {
            name: name.into(),
            wait: crate::cli::Wait {
                timeout: None,
                no_wait: false,
                conflict_exit_code: exit::BUSY,
            },
            ttl: None,
            hold: Hold {
                kill_after: Duration::from_millis(500),
                max_hold: None,
                lost_exit_code: exit::LOST,
            },
            command: ["sh", "-c", script].iter().map(OsString::from).collect(),
        }
    }

    /// The real loss path: another member breaks the lock, `lost()` fires, CMD is stopped.
    #[test]
    fn a_broken_lock_stops_cmd() {
        runtime().block_on(async {
            let holder = connect::start("zake://cli-lock-broken", "holder")
                .await
                .unwrap();
            let breaker = connect::start("zake://cli-lock-broken", "breaker")
                .await
                .unwrap();
            let lock_args = args("job", "sleep 30");
            let started = std::time::Instant::now();
            let run = locked(&holder, &lock_args);
            let brk = async {
                let lock = breaker.lock("job");
                while lock.holder().await.unwrap().is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert!(lock.break_lock().await.unwrap());
            };
            let (outcome, ()) = tokio::join!(run, brk);
            let failure = outcome.unwrap_err();
            assert_eq!(failure.status, exit::LOST);
            assert!(
                failure.message.contains("lock job lost"),
                "{}",
                failure.message
            );
            assert!(failure.message.contains("broken"), "{}", failure.message);
            assert!(started.elapsed() < Duration::from_secs(10));
        });
    }

    #[test]
    fn tokens_reach_cmd() {
        runtime().block_on(async {
            let coord = connect::start("zake://cli-lock-token", "m").await.unwrap();
            let check = args(
                "job",
                "test \"$TOOZ_FENCING_TOKEN\" = 1 && test \"$TOOZ_LOCK_NAME\" = job",
            );
            assert_eq!(locked(&coord, &check).await.unwrap(), 0);
            let check = args("job", "test \"$TOOZ_FENCING_TOKEN\" = 2");
            assert_eq!(locked(&coord, &check).await.unwrap(), 0);
        });
    }
}
