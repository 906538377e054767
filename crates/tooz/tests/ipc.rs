//! The `ipc` driver with real processes: crash safety (a holder or member killed with
//! SIGKILL), breaks across processes, and interoperation with Python tooz.
//!
//! Child processes are this test binary re-run in a child mode (`TOOZ_IPC_CHILD`). The
//! Python tests use the interpreter named by `TOOZ_PYTHON` (default: the workspace's
//! `.venv-tooz/bin/python`, with tooz 9.1.0 and sysv_ipc); without one they are skipped,
//! except under `CI=true`, where a missing interpreter fails them.
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

/// The Python interpreter with tooz and sysv_ipc, or `None` to skip (never under CI).
fn python() -> Option<String> {
    let python = std::env::var("TOOZ_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv-tooz/bin/python").to_string()
    });
    let usable = std::process::Command::new(&python)
        .args(["-c", "import tooz.drivers.ipc, sysv_ipc"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if usable {
        return Some(python);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {python} cannot import tooz and sysv_ipc (set TOOZ_PYTHON)");
    }
    eprintln!("skipped: {python} cannot import tooz and sysv_ipc (set TOOZ_PYTHON)");
    None
}

/// A Python helper reading commands on stdin, one per line, answering one line each.
const PY_HELPER: &str = r#"
import sys, threading
from tooz import coordination
from tooz.drivers.ipc import IPCLock

def out(*words):
    print(*words, flush=True)

locks = {}
coord = None

def acquire(name):
    # Blocking: this sysv_ipc build may lack semtimedop, which tooz needs for any other mode.
    lock = locks.setdefault(name, IPCLock(name))
    out("ACQUIRED", lock.acquire(blocking=True))

out("READY")
for line in sys.stdin:
    cmd, *args = line.split()
    args = [bytes.fromhex(a) for a in args]
    if cmd == "acquire":
        threading.Thread(target=acquire, args=(args[0],), daemon=True).start()
    elif cmd == "release":
        out("RELEASE", locks[args[0]].release())
    elif cmd == "start":
        coord = coordination.get_coordinator("ipc://", b"python-member")
        coord.start()
        out("STARTED")
    elif cmd == "create":
        coord.create_group(args[0]).get()
        out("CREATED")
    elif cmd == "groups":
        out("GROUPS", *sorted(g.hex() for g in coord.get_groups().get()))
    elif cmd == "stop":
        coord.stop()
        out("STOPPED")
"#;

fn python_helper(python: &str) -> Proc {
    let mut command = Command::new(python);
    command.args(["-c", PY_HELPER]);
    spawn(command)
}

/// Deletes the empty groups that earlier runs of the test suites left in the host's group
/// list (names `<prefix>-<32 hex digits>`), so that Python, which refuses to write a list of
/// 1022 bytes or more, can add one.
async fn forget_test_groups(coord: &Coordinator) {
    for group in coord.get_groups().await.unwrap() {
        let Some((prefix, suffix)) = group.as_str().and_then(|g| g.rsplit_once('-')) else {
            continue;
        };
        let generated = suffix.len() == 32
            && suffix.bytes().all(|b| b.is_ascii_hexdigit())
            && !prefix.is_empty();
        if generated {
            let _ = coord.delete_group(group).await;
        }
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_locks_exclude_each_other() {
    let Some(python) = python() else { return };
    let name = unique("interop-lock");
    let coord = started(&unique("rust")).await;
    let lock = coord.lock(name.as_str());
    let mut py = python_helper(&python);
    py.expect("READY").await;

    // A Rust holder blocks a Python acquirer, which gets the lock (waiting in the kernel)
    // once Rust releases.
    let held = lock.acquire().await.unwrap();
    py.say(&format!("acquire {}", hex(&name))).await;
    let early = tokio::time::timeout(Duration::from_millis(300), py.expect("ACQUIRED")).await;
    assert!(early.is_err(), "Python took a lock Rust holds");
    assert!(held.release().await.unwrap());
    assert_eq!(py.expect("ACQUIRED").await, "ACQUIRED True");

    // A Python holder blocks a Rust acquirer, which gets it on Python's release.
    assert!(lock.try_acquire().await.unwrap().is_none());
    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire_timeout(WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "Rust took a lock Python holds");
    let holder = coord.lock(name.as_str()).holder().await;
    assert!(holder.is_err(), "Python records no member id: {holder:?}");
    py.say(&format!("release {}", hex(&name))).await;
    assert_eq!(py.expect("RELEASE").await, "RELEASE True");
    let guard = waiter.await.unwrap().unwrap();
    assert!(guard.release().await.unwrap());
    coord.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_see_each_others_groups() {
    let Some(python) = python() else { return };
    let (from_rust, from_python) = (unique("rust-group"), unique("python-group"));
    let coord = started(&unique("rust")).await;
    forget_test_groups(&coord).await;
    coord.create_group(from_rust.as_str()).await.unwrap();

    let mut py = python_helper(&python);
    py.expect("READY").await;
    py.say("start").await;
    py.expect("STARTED").await;
    py.say("groups").await;
    let listed = py.expect("GROUPS").await;
    assert!(listed.contains(&hex(&from_rust)), "{listed}");
    py.say(&format!("create {}", hex(&from_python))).await;
    py.expect("CREATED").await;
    let groups = coord.get_groups().await.unwrap();
    assert!(
        groups.contains(&Id::from(from_python.as_str())),
        "{groups:?}"
    );

    // Python's stop() removes the shared segment; the started Rust coordinator puts the
    // groups back for everyone.
    py.say("stop").await;
    py.expect("STOPPED").await;
    let groups = coord.get_groups().await.unwrap();
    assert!(groups.contains(&Id::from(from_rust.as_str())), "{groups:?}");
    assert!(
        groups.contains(&Id::from(from_python.as_str())),
        "{groups:?}"
    );
    py.say("start").await;
    py.expect("STARTED").await;
    py.say("groups").await;
    let listed = py.expect("GROUPS").await;
    assert!(listed.contains(&hex(&from_rust)), "{listed}");
    assert!(listed.contains(&hex(&from_python)), "{listed}");

    for group in [from_rust, from_python] {
        coord.delete_group(group.as_str()).await.unwrap();
    }
    coord.stop().await.unwrap();
}
