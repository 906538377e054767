//! From the global options to a started coordinator: the default URL and member id, and
//! `--ttl` as a URL option.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tooz::{Characteristic, Coordinator};

use crate::cli::Global;
use crate::exit::Failure;

/// The directory of the default `file://` URL: `$XDG_RUNTIME_DIR/tooz`, or
/// `<temp dir>/tooz-<uid>`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("tooz"),
        _ => std::env::temp_dir().join(format!("tooz-{}", uid())),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `dir` (mode 0700) if needed and checks that it is a directory of ours, so that
/// another user cannot plant it in a shared temp dir.
fn own_dir(dir: &Path) -> Result<(), Failure> {
    let made = DirBuilder::new().recursive(true).mode(0o700).create(dir);
    made.map_err(|e| Failure::msg(format!("cannot create {}: {e}", dir.display())))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Failure::msg(format!("cannot use {}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != uid() {
        return Err(Failure::msg(format!(
            "refusing to use {}: not a directory owned by this user; pass --url",
            dir.display()
        )));
    }
    Ok(())
}

/// `file://` and the percent-encoded absolute path (the `url` crate's encoding).
pub fn file_url(dir: &Path) -> String {
    match url::Url::from_file_path(dir) {
        Ok(url) => url.to_string(),
        // Only a relative path fails, and `default_dir` is absolute.
        Err(()) => format!("file://{}", dir.display()),
    }
}

/// `<hostname>-<pid>`.
pub fn default_member() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL or the end.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = match std::str::from_utf8(&buf[..len]) {
        Ok(host) if ok && !host.is_empty() => host.to_string(),
        _ => "localhost".to_string(),
    };
    format!("{host}-{}", std::process::id())
}

/// The URL to use: `--url`/`TOOZ_URL`, or the default `file://` directory (created).
pub fn url(global: &Global) -> Result<String, Failure> {
    match &global.url {
        Some(url) => Ok(url.clone()),
        None => {
            let dir = default_dir();
            own_dir(&dir)?;
            Ok(file_url(&dir))
        }
    }
}

/// A started coordinator for a command that only reads, or `None` when the URL (or the
/// default one) names a directory of the file driver that does not exist: there is nothing
/// to read there, and reading must not create the tree. The URL is checked either way.
pub async fn reader(global: &Global) -> Result<Option<Coordinator>, Failure> {
    let url = match &global.url {
        Some(url) => url.clone(),
        None => file_url(&default_dir()),
    };
    let coord = shared(&url, &member(global)).await?;
    let parsed = tooz::DriverUrl::parse(&url)?;
    if coord.driver_name() == "file" && !Path::new(&parsed.path()).exists() {
        return Ok(None);
    }
    if global.url.is_none() {
        own_dir(&default_dir())?;
    }
    coord.start().await.map_err(|e| unreachable(e, &url))?;
    Ok(Some(coord))
}

/// The failure of a read-only command on a group in a store that does not exist.
pub fn no_such_group(group: &str) -> Failure {
    Failure::msg(tooz::Error::GroupNotCreated {
        group: group.into(),
    })
}

/// The member id to use.
pub fn member(global: &Global) -> String {
    global.member.clone().unwrap_or_else(default_member)
}

/// Adds `lock_timeout=<ttl>` to `url` for drivers whose locks can expire (those without
/// NON_TIMEOUT_BASED); leaves `url` as it is for the others, which ignore a TTL.
pub fn with_ttl(url: &str, ttl: Option<Duration>) -> Result<String, Failure> {
    let Some(ttl) = ttl else {
        return Ok(url.to_string());
    };
    let parsed = tooz::DriverUrl::parse(url)?;
    let entry = tooz::drivers::lookup(parsed.scheme());
    let expires = entry
        .and_then(|e| e.facts)
        .is_none_or(|f| !f.characteristics.contains(Characteristic::NonTimeoutBased));
    if !expires {
        return Ok(url.to_string());
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    if query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("lock_timeout"))
    }) {
        return Err(Failure::usage(
            "--ttl conflicts with the lock_timeout option of the URL: give one of them",
        ));
    }
    let option = format!("lock_timeout={}", ttl.as_secs_f64());
    Ok(match query {
        Some(q) if !q.is_empty() => format!("{base}?{q}&{option}"),
        _ => format!("{base}?{option}"),
    })
}

/// Connects to `url` as `member` and starts the coordinator, whatever the driver (the unit
/// tests use zake).
#[cfg(test)]
pub async fn start(url: &str, member: &str) -> Result<Coordinator, Failure> {
    let coord = Coordinator::connect(url, member).await?;
    coord.start().await?;
    Ok(coord)
}

/// Connects to `url` as `member` and starts the coordinator, for a command that coordinates
/// with other processes: a driver whose state lives in one process (zake) is refused, as its
/// locks and groups would be this process's alone.
pub async fn start_shared(url: &str, member: &str) -> Result<Coordinator, Failure> {
    let coord = shared(url, member).await?;
    coord.start().await.map_err(|e| unreachable(e, url))?;
    Ok(coord)
}

/// A failure to start, saying where tooz tried to connect when the backend could not be
/// reached (unless the driver's message says it already), and what a bare "broken pipe" from
/// the server usually means.
fn unreachable(error: tooz::Error, url: &str) -> Failure {
    if !matches!(
        error,
        tooz::Error::Connection(_) | tooz::Error::OperationTimedOut(_)
    ) {
        return error.into();
    }
    let Ok(parsed) = tooz::DriverUrl::parse(url) else {
        return error.into();
    };
    let place = match parsed.hosts().join(",") {
        hosts if hosts.is_empty() => parsed.path(),
        hosts => hosts,
    };
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    let explained = lower.contains("is it one?");
    let hung_up = [
        "broken pipe",
        "reset by peer",
        "unexpected",
        "parse",
        "invalid response",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let hint = if hung_up && !explained {
        format!(
            " (the server hung up or answered nonsense: is a {} server listening there?)",
            parsed.scheme()
        )
    } else {
        String::new()
    };
    if text.contains(&place) {
        return Failure::msg(format!("cannot connect: {text}{hint}"));
    }
    Failure::msg(format!("cannot connect to {place}: {text}{hint}"))
}

/// The coordinator of [`start_shared`], not started: the URL and its options are checked,
/// nothing is connected or created yet.
async fn shared(url: &str, member: &str) -> Result<Coordinator, Failure> {
    Coordinator::builder(url, member)
        .require([Characteristic::DistributedAcrossProcesses])
        .connect()
        .await
        .map_err(|error| match error {
            tooz::Error::DriverChosenPoorly { driver, .. } => Failure::msg(format!(
                "the {driver} driver keeps its state inside one process, so a tooz command \
                 would coordinate with nobody: give a URL shared by processes (file://DIR, \
                 redis://HOST, ...; see 'tooz drivers')"
            )),
            other => other.into(),
        })
}

/// Connects with the global options, for a command that coordinates with other processes.
pub async fn coordinator(global: &Global) -> Result<Coordinator, Failure> {
    start_shared(&url(global)?, &member(global)).await
}

/// Stops the coordinator (leaving groups, releasing locks); failures only matter to a caller
/// that asks.
pub async fn stop(coord: &Coordinator) {
    let _ = coord.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_encoded() {
        assert_eq!(
            file_url(Path::new("/run/user/1000/tooz")),
            "file:///run/user/1000/tooz"
        );
        assert_eq!(file_url(Path::new("/tmp/a b%c")), "file:///tmp/a%20b%25c");
        let url = tooz::DriverUrl::parse(&file_url(Path::new("/tmp/a b?#c"))).unwrap();
        assert_eq!(url.path(), "/tmp/a b?#c");
    }

    #[test]
    fn member_is_host_and_pid() {
        let member = default_member();
        assert!(
            member.ends_with(&format!("-{}", std::process::id())),
            "{member}"
        );
        assert!(member.len() > 2);
    }

    #[test]
    fn ttl_goes_to_drivers_whose_locks_expire() {
        let five = Some(Duration::from_secs(5));
        // zake's locks end with the session: nothing to add.
        assert_eq!(with_ttl("zake://", five).unwrap(), "zake://");
        // The file driver is not NON_TIMEOUT_BASED (its membership expires): the option is
        // passed, and its kernel locks ignore it.
        assert_eq!(
            with_ttl("file:///tmp/x", five).unwrap(),
            "file:///tmp/x?lock_timeout=5"
        );
        assert_eq!(
            with_ttl("file:///tmp/x?timeout=3", five).unwrap(),
            "file:///tmp/x?timeout=3&lock_timeout=5"
        );
        assert!(with_ttl("file:///tmp/x?lock_timeout=3", five).is_err());
        assert_eq!(with_ttl("zake://", None).unwrap(), "zake://");
    }
}
