//! Control of the test servers started by the repository's `scripts/services`, for fault
//! tests: stop one gracefully, kill it, restart it, or a single member of a clustered setup
//! (`zk3-2`, `etcd3x3-1`, `redis-1`, `redis-sentinel-2`, ...).
//!
//! These functions run the script and wait for it: they block the calling thread (a restart
//! waits until the server is ready again, up to the script's timeout). From async code use the
//! `*_async` variants, which run the script on tokio's blocking thread pool.
//!
//! The script honours `TOOZ_SERVICES_DIR`, which the child process inherits.

use std::io;
use std::path::PathBuf;
use std::process::Command;

/// The root of the repository (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|crates| crates.parent())
        .map(PathBuf::from)
        .unwrap_or(manifest)
}

/// The path of `scripts/services`.
pub fn script() -> PathBuf {
    repo_root().join("scripts").join("services")
}

/// Runs `scripts/services ARGS...` and returns its standard output.
///
/// # Errors
///
/// If the script cannot be run, or exits unsuccessfully (the error carries its output).
pub fn run(args: &[&str]) -> io::Result<String> {
    let script = script();
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", script.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(io::Error::other(format!(
            "scripts/services {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// Checks that `name` looks like a server or member name, so it cannot pass as an option.
fn check_name(name: &str) -> io::Result<&str> {
    let valid = !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a server or member name: {name:?}"),
        ))
    }
}

/// Stops a server, or one member of a clustered setup, gracefully (`scripts/services stop NAME`).
///
/// # Errors
///
/// If `name` is unknown or the script fails.
pub fn stop(name: &str) -> io::Result<()> {
    run(&["stop", check_name(name)?]).map(drop)
}

/// Kills a server, or one member, with SIGKILL (`scripts/services kill NAME`).
///
/// # Errors
///
/// If `name` is unknown or the script fails.
pub fn kill(name: &str) -> io::Result<()> {
    run(&["kill", check_name(name)?]).map(drop)
}

/// (Re)starts a server, or one member, keeping its data, and waits until it is ready
/// (`scripts/services restart NAME`).
///
/// # Errors
///
/// If `name` is unknown, or the server does not become ready in time.
pub fn restart(name: &str) -> io::Result<()> {
    run(&["restart", check_name(name)?]).map(drop)
}

/// The URLs of the running servers, as `(server name, tooz URL)` pairs
/// (`scripts/services urls`). A server may have several URLs (Redis: direct and Sentinel).
///
/// # Errors
///
/// If the script fails.
pub fn urls() -> io::Result<Vec<(String, String)>> {
    Ok(run(&["urls"])?
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, url)| (name.to_owned(), url.to_owned()))
        .collect())
}

/// Runs a blocking helper on tokio's blocking thread pool.
async fn off_thread(f: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("scripts/services task failed: {e}")))?
}

/// [`stop`] without blocking the async runtime.
///
/// # Errors
///
/// As [`stop`].
pub async fn stop_async(name: &str) -> io::Result<()> {
    let name = check_name(name)?.to_owned();
    off_thread(move || stop(&name)).await
}

/// [`kill`] without blocking the async runtime.
///
/// # Errors
///
/// As [`kill`].
pub async fn kill_async(name: &str) -> io::Result<()> {
    let name = check_name(name)?.to_owned();
    off_thread(move || kill(&name)).await
}

/// [`restart`] without blocking the async runtime.
///
/// # Errors
///
/// As [`restart`].
pub async fn restart_async(name: &str) -> io::Result<()> {
    let name = check_name(name)?.to_owned();
    off_thread(move || restart(&name)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_script() {
        assert!(script().is_file(), "{}", script().display());
    }

    #[test]
    fn rejects_odd_names() {
        assert!(check_name("zk3-2").is_ok());
        assert!(check_name("etcd3x3-1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("--help").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("../x").is_err());
    }

    #[test]
    fn unknown_names_fail() {
        let err = stop("no-such-server").unwrap_err();
        assert!(err.to_string().contains("unknown"), "{err}");
    }
}
