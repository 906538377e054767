//! The `ipc` driver with real processes: crash safety (a holder or member killed with
//! SIGKILL) and breaks across processes. Child processes are this test binary re-run in a
//! child mode (`TOOZ_IPC_CHILD`). Sharing with Python tooz is the interop suite's
//! (`tests/interop`).
#![cfg(feature = "ipc")]

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tooz::{Coordinator, Id};

const URL: &str = "ipc://";
const WAIT: Duration = Duration::from_secs(10);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn started(member: &str) -> Coordinator {
    let coord = Coordinator::connect(URL, member).await.unwrap();
    coord.start().await.unwrap();
    coord
}

/// Child mode: `TOOZ_IPC_CHILD=<mode>`, `TOOZ_IPC_NAME=<lock or group>`,
/// `TOOZ_IPC_MEMBER=<member id>`. Prints one line when ready, then waits for a line on stdin
/// (or to be killed).
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var("TOOZ_IPC_CHILD") else {
        return;
    };
    let name = std::env::var("TOOZ_IPC_NAME").unwrap();
    let member = std::env::var("TOOZ_IPC_MEMBER").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let coord = started(&member).await;
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        match mode.as_str() {
            "hold" => {
                let guard = coord.lock(name.as_str()).acquire().await.unwrap();
                println!("READY {}", guard.fencing_token());
                let _ = stdin.next_line().await;
                println!("RELEASED {}", guard.release().await.unwrap());
            }
            "join" => {
                coord
                    .join_group_create(name.as_str(), b"child")
                    .await
                    .unwrap();
                println!("READY");
                let _ = stdin.next_line().await;
            }
            other => panic!("unknown child mode {other}"),
        }
        coord.stop().await.unwrap();
    });
    std::process::exit(0);
}

struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    /// The rest of the next line containing `prefix`, from `prefix` on (the test harness
    /// may print before it on the same line; other lines are skipped).
    async fn expect(&mut self, prefix: &str) -> String {
        let read = async {
            loop {
                match self.lines.next_line().await.unwrap() {
                    Some(line) => {
                        if let Some(at) = line.find(prefix) {
                            return line[at..].to_string();
                        }
                    }
                    None => panic!("child exited before printing {prefix}"),
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no {prefix} from the child"))
    }

    async fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    async fn kill(&mut self) {
        self.child.start_kill().unwrap(); // SIGKILL
        self.child.wait().await.unwrap();
    }
}

fn spawn(mut command: Command) -> Proc {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Proc { child, lines }
}

fn rust_child(mode: &str, name: &str, member: &str) -> Proc {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("TOOZ_IPC_CHILD", mode)
        .env("TOOZ_IPC_NAME", name)
        .env("TOOZ_IPC_MEMBER", member);
    spawn(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_holder_frees_the_lock_at_once() {
    let name = unique("crash-lock");
    let coord = started(&unique("survivor")).await;
    let mut child = rust_child("hold", &name, &unique("victim"));
    let ready = child.expect("READY").await;
    let child_token: u64 = ready["READY ".len()..].parse().unwrap();
    let lock = coord.lock(name.as_str());
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "child holds it"
    );
    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire_timeout(WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    let killed = Instant::now();
    child.kill().await;
    let guard = waiter.await.unwrap().unwrap();
    let handed_over = killed.elapsed();
    assert!(
        handed_over < Duration::from_millis(200),
        "waiter got the lock {handed_over:?} after the kill"
    );
    assert!(guard.fencing_token().0 > child_token);
    assert!(guard.release().await.unwrap());
    coord.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_member_leaves_at_once() {
    let group = unique("crash-group");
    let member = unique("victim");
    let coord = started(&unique("survivor")).await;
    let mut child = rust_child("join", &group, &member);
    child.expect("READY").await;
    let members = coord.get_members(group.as_str()).await.unwrap();
    assert!(members.contains(&Id::from(member.as_str())), "{members:?}");
    child.kill().await;
    let members = coord.get_members(group.as_str()).await.unwrap();
    assert!(
        !members.contains(&Id::from(member.as_str())),
        "a dead member is listed: {members:?}"
    );
    coord.delete_group(group.as_str()).await.unwrap();
    coord.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_in_another_process_is_reported_and_broken() {
    let group = unique("election");
    let name = format!("leader_of_{group}");
    let member = unique("child-leader");
    let coord = started(&unique("observer")).await;
    let mut child = rust_child("hold", &name, &member);
    child.expect("READY").await;
    assert_eq!(
        coord.get_leader(group.as_str()).await.unwrap(),
        Some(Id::from(member.as_str()))
    );
    assert!(coord
        .leader_lock(group.as_str())
        .break_lock()
        .await
        .unwrap());
    assert_eq!(coord.get_leader(group.as_str()).await.unwrap(), None);
    let mine = coord.campaign(group.as_str()).await.unwrap();
    // The broken holder is not told, but its release says it had lost the lock...
    child.say("release").await;
    assert_eq!(child.expect("RELEASED").await, "RELEASED false");
    // ...and does not free ours.
    assert_eq!(
        coord.get_leader(group.as_str()).await.unwrap().as_ref(),
        Some(coord.member_id())
    );
    assert!(mine.resign().await.unwrap());
    child.child.wait().await.unwrap();
    coord.stop().await.unwrap();
}

/// Waiters whose futures are dropped while blocked in the kernel never end up holding the
/// lock, even when it is released just as they give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_waiters_never_keep_the_lock() {
    let name = unique("abandoned");
    let (a, b, c) = (
        started(&unique("a")).await,
        started(&unique("b")).await,
        started(&unique("c")).await,
    );
    for round in 0..20u64 {
        let held = a.lock(name.as_str()).acquire().await.unwrap();
        let give_up = Duration::from_millis(20 + round % 5);
        let waiting = b.lock(name.as_str());
        let releasing = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            held.release().await.unwrap()
        };
        let (gave_up, released) =
            tokio::join!(tokio::time::timeout(give_up, waiting.acquire()), releasing);
        assert!(released);
        if let Ok(guard) = gave_up {
            guard.unwrap().release().await.unwrap();
        }
        let guard = c.lock(name.as_str()).acquire_timeout(WAIT).await.unwrap();
        guard.release().await.unwrap();
    }
    for coord in [a, b, c] {
        coord.stop().await.unwrap();
    }
}

/// Stopping a coordinator fails its pending acquires instead of leaving them waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_fails_pending_acquires() {
    let name = unique("stop-waiting");
    let (a, b) = (started(&unique("a")).await, started(&unique("b")).await);
    let held = a.lock(name.as_str()).acquire().await.unwrap();
    let waiting = b.lock(name.as_str());
    let waiter = tokio::spawn(async move { waiting.acquire().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.stop().await.unwrap();
    let outcome = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(held.release().await.unwrap());
    assert!(a.lock(name.as_str()).try_acquire().await.unwrap().is_some());
    a.stop().await.unwrap();
}
