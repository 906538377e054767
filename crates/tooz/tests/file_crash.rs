//! Crash safety of the file driver, with real child processes killed by SIGKILL.

mod support;

use std::process::{Child, Command};
use std::time::Duration;

use sha1::Digest;
use support::{signal, wait_for_file, TempDir};
use tooz::{Coordinator, Error, Id};

const CHILD_ENV: &str = "TOOZ_FILE_CRASH_CHILD";

/// Child entry point: in a parent's child process, hold a lock and a membership until killed.
#[test]
fn child_holds_until_killed() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let [url, ready]: [&str; 2] = spec.split('|').collect::<Vec<_>>().try_into().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let coord = Coordinator::connect(url, "doomed").await.unwrap();
        coord.start().await.unwrap();
        let _guard = coord.lock("crash-lock").acquire().await.unwrap();
        coord.join_group_create("crash-group", ()).await.unwrap();
        std::fs::write(ready, b"").unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await; // bounded: the parent kills us
    });
}

const DRIVER_LOCK_CHILD_ENV: &str = "TOOZ_FILE_DRIVER_LOCK_CHILD";

/// Child entry point: take `.driver_lock` of a directory as Python tooz does (a classic
/// process-owned `fcntl` record lock), say so, and keep it until killed.
#[test]
fn child_holds_the_driver_lock() {
    let Ok(spec) = std::env::var(DRIVER_LOCK_CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let [lock_path, ready]: [&str; 2] = spec.split('|').collect::<Vec<_>>().try_into().unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .unwrap();
    // SAFETY: `flock` is a plain C struct; all-zero bytes are a valid value.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = libc::F_WRLCK as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open and `request` is a valid `flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &mut request) };
    assert_eq!(
        rc,
        0,
        "locking {lock_path}: {}",
        std::io::Error::last_os_error()
    );
    std::fs::write(ready, b"").unwrap();
    std::thread::sleep(Duration::from_secs(60)); // bounded: the parent kills us
}

/// A peer process holding the directory's `.driver_lock` is stopped (SIGSTOP): a group call
/// fails with the timeout error within the configured bound, and the runtime's only worker
/// keeps running other tasks meanwhile. Once the peer is gone, the same call succeeds.
#[tokio::test(flavor = "current_thread")]
async fn a_stopped_peer_holding_the_driver_lock_blocks_no_thread() {
    let dir = TempDir::new("tooz-stopped-peer");
    // The driver's own wait ends after `timeout`; the core's bound of one call after
    // `operation_timeout`, which may be set apart from it.
    let short_timeout = format!("{}?timeout=2", dir.url());
    let short_bound = format!("{}?timeout=30&operation_timeout=0.5", dir.url());
    let owner = Coordinator::connect(&short_timeout, "owner").await.unwrap();
    owner.start().await.unwrap();
    owner.create_group("g").await.unwrap();

    let ready = dir.0.join("ready");
    let mut peer = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holds_the_driver_lock", "--nocapture"])
        .env(
            DRIVER_LOCK_CHILD_ENV,
            format!(
                "{}|{}",
                dir.0.join(".driver_lock").display(),
                ready.display()
            ),
        )
        .spawn()
        .unwrap();
    wait_for_file(&ready);
    signal(&peer, libc::SIGSTOP);

    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    for (url, bound, member) in [
        (&short_timeout, Duration::from_secs(2), "waiter-1"),
        (&short_bound, Duration::from_millis(500), "waiter-2"),
    ] {
        let waiter = Coordinator::connect(url, member).await.unwrap();
        waiter.start().await.unwrap();
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let joined = waiter.join_group("g", ()).await;
        let took = started.elapsed();
        assert!(
            matches!(joined, Err(Error::OperationTimedOut(_))),
            "{url}: {joined:?}"
        );
        assert!(
            took >= bound,
            "{url}: gave up after {took:?}, before {bound:?}"
        );
        assert!(
            took < bound + Duration::from_secs(3),
            "{url}: took {took:?}"
        );
        let ran = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(
            ran * 10 >= bound.as_millis() as u64 / 2,
            "{url}: the worker ran {ran} ticks"
        );
        waiter.stop().await.unwrap();
    }
    ticker.abort();

    signal(&peer, libc::SIGCONT);
    kill9(&mut peer);
    let waiter = Coordinator::connect(&short_timeout, "waiter-3")
        .await
        .unwrap();
    waiter.start().await.unwrap();
    waiter.join_group("g", ()).await.unwrap();
    assert!(owner
        .get_members("g")
        .await
        .unwrap()
        .contains(&Id::from("waiter-3")));
    waiter.stop().await.unwrap();
    owner.stop().await.unwrap();
}

fn spawn_child(url: &str, ready: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{url}|{}", ready.display()))
        .spawn()
        .unwrap()
}

fn kill9(child: &mut Child) {
    signal(child, libc::SIGKILL);
    child.wait().unwrap();
}

#[tokio::test]
async fn killed_holder_frees_the_lock_at_once_and_its_membership_expires() {
    let dir = TempDir::new("tooz-crash");
    let url = format!("{}?timeout=1", dir.url());
    let ready = dir.0.join("ready");
    let mut child = spawn_child(&url, &ready);
    wait_for_file(&ready);

    let me = Coordinator::connect(&url, "survivor").await.unwrap();
    me.start().await.unwrap();
    assert!(me.lock("crash-lock").try_acquire().await.unwrap().is_none());
    assert!(me
        .get_members("crash-group")
        .await
        .unwrap()
        .contains(&Id::from("doomed")));

    kill9(&mut child);
    let guard = me.lock("crash-lock").try_acquire().await.unwrap();
    assert!(
        guard.is_some(),
        "the kernel frees a dead holder's lock at once"
    );

    let mut watch = me.watch_group("crash-group").await.unwrap();
    let left = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut watch),
    )
    .await
    .expect("membership expires after its timeout")
    .unwrap();
    assert_eq!(left.member(), &Id::from("doomed"));
    assert!(!me
        .get_members("crash-group")
        .await
        .unwrap()
        .contains(&Id::from("doomed")));
    me.stop().await.unwrap();
}

fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn half_written_records_are_never_read_as_valid() {
    let dir = TempDir::new("tooz-torn");
    let me = Coordinator::connect(&dir.url(), "reader").await.unwrap();
    me.start().await.unwrap();
    me.join_group_create("g", b"caps").await.unwrap();
    let group_dir = dir.0.join("groups").join(sha1_hex(b"g"));
    let whole = std::fs::read(group_dir.join(format!("{}.raw", sha1_hex(b"reader")))).unwrap();

    // A writer that died mid-write (as Python tooz, which writes member files in place, can).
    let torn = group_dir.join(format!("{}.raw", sha1_hex(b"torn")));
    std::fs::write(&torn, &whole[..whole.len() / 2]).unwrap();
    let members = me.get_members("g").await.unwrap();
    assert_eq!(members, [Id::from("reader")].into_iter().collect());
    assert!(matches!(
        me.get_member_capabilities("g", "torn").await,
        Err(Error::Serialization(_))
    ));

    // A torn group metadata file hides the group instead of breaking the listing.
    let other = dir.0.join("groups").join(sha1_hex(b"torn-group"));
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join(".metadata"), [0x82, 0xa8]).unwrap();
    let groups = me.get_groups().await.unwrap();
    assert_eq!(groups, [Id::from("g")].into_iter().collect());
    me.stop().await.unwrap();
}

#[tokio::test]
async fn names_outside_the_directory_are_rejected() {
    let dir = TempDir::new("tooz-names");
    let me = Coordinator::connect(&dir.url(), "m").await.unwrap();
    me.start().await.unwrap();
    for bad in [
        "../escape",
        "/etc/passwd",
        "groups/x",
        "tmp",
        ".driver_lock",
        "a/../../b",
    ] {
        let result = me.lock(bad).try_acquire().await;
        assert!(
            matches!(result, Err(Error::InvalidName { .. })),
            "{bad}: {result:?}"
        );
    }
    let nested = me.lock("a/b/c").try_acquire().await.unwrap().unwrap();
    assert!(dir.0.join("a/b/c").exists());
    nested.release().await.unwrap();
    me.stop().await.unwrap();
}
