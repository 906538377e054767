//! Child-process mode: this test binary, re-executed with `TOOZ_FAULTS_CHILD=hold`, joins a
//! group, takes a lock, writes the lock's fencing token to `<dir>/token` and waits to be
//! killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tooz::{Coordinator, FencingToken};

use crate::support::{signal, wait_for_file, write_atomically};

const MODE: &str = "TOOZ_FAULTS_CHILD";
const URL: &str = "TOOZ_FAULTS_URL";
const LOCK: &str = "TOOZ_FAULTS_LOCK";
const GROUP: &str = "TOOZ_FAULTS_GROUP";
const DIR: &str = "TOOZ_FAULTS_DIR";

/// Longest a child waits to be killed.
const LIFETIME: Duration = Duration::from_secs(60);

/// Runs the child mode if this process is a child; its exit code.
pub fn child_main() -> Option<i32> {
    let mode = std::env::var(MODE).ok()?;
    let var = |name| std::env::var(name).unwrap_or_else(|_| panic!("child: {name} unset"));
    let (url, lock, group, dir) = (var(URL), var(LOCK), var(GROUP), PathBuf::from(var(DIR)));
    assert_eq!(mode, "hold", "child: unknown mode {mode}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let held = runtime.block_on(async move {
        let coord = Coordinator::connect(&url, "doomed").await?;
        coord.start().await?;
        coord.join_group_create(group.as_str(), ()).await?;
        let guard = coord.lock(lock.as_str()).acquire().await?;
        write_atomically(&dir.join("token"), guard.fencing_token().0.to_string());
        tokio::time::sleep(LIFETIME).await;
        Ok::<_, tooz::Error>(guard)
    });
    match held {
        Ok(_) => Some(0),
        Err(e) => {
            eprintln!("child: {e}");
            Some(2)
        }
    }
}

/// A child process holding a lock; killed when dropped, if the case did not kill it.
pub struct Holder {
    child: Option<Child>,
    /// The fencing token the child got.
    pub token: FencingToken,
}

impl Holder {
    /// Starts a child that holds `lock` at `url` (a member of `group`, as `doomed`) until
    /// killed, and waits until it holds the lock.
    pub async fn spawn(url: &str, lock: &str, group: &str, dir: &Path) -> Holder {
        let child = Command::new(std::env::current_exe().expect("test binary path"))
            .env(MODE, "hold")
            .env(URL, url)
            .env(LOCK, lock)
            .env(GROUP, group)
            .env(DIR, dir)
            .spawn()
            .expect("spawn child");
        let mut holder = Holder {
            child: Some(child),
            token: FencingToken(0),
        };
        let token = dir.join("token");
        let token = tokio::task::spawn_blocking(move || {
            wait_for_file(&token);
            std::fs::read_to_string(&token).expect("read token")
        })
        .await
        .expect("wait for the child's token");
        holder.token = FencingToken(token.parse().expect("a token"));
        holder
    }

    /// Kills the child with SIGKILL and reaps it.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("killed once");
        signal(&child, libc::SIGKILL);
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("reap the child")
            .expect("wait for the child");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
