//! The interop suite: tooz-rs and Python tooz sharing one backend, per driver URL. Each case
//! runs against every URL as its own test `<case>::<scheme>`: the local drivers (`file://` in
//! a temp dir, `ipc://`) plus the network URLs of `TOOZ_EXTRA_TEST_URLS` (filled by
//! `scripts/test` with the running servers). Python's side is `peer.py`, run by the Python
//! tooz that [`peer::venv_for`] picks for the URL's scheme.
//!
//! Before the first case of a URL, `peer.py probe` tries each API part once: a case needing
//! a part that Python's driver answers with `NotImplemented` is ignored, with that answer as
//! the reason. A URL that cannot be used (server down, venv missing) ignores its cases with
//! the reason, except under `CI=true`, where they fail.
//!
//! The cases of one URL run one at a time (Python's ipc driver, for one, erases the host's
//! group list whenever one of its coordinators stops); URLs run side by side.

mod cases;
mod expiry;
#[cfg(feature = "memcached")]
mod memcached;
mod peer;
#[cfg(feature = "redis")]
mod redis;
#[path = "../support/mod.rs"]
mod support;
#[cfg(feature = "zookeeper")]
mod zookeeper;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use tooz::{Coordinator, Id, Support, WatchKind};

use peer::{Peer, Probe};

/// Longest a case may run before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// An API part a case needs on both sides; the probe's name for it on Python's.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Lock,
    TryLock,
    Groups,
    Members,
    /// Membership watches (the Rust side only: Python's are polled `get_members`).
    Watch,
    Lead,
    Leader,
}

impl Part {
    fn python(self) -> Option<&'static str> {
        Some(match self {
            Part::Lock => "lock",
            Part::TryLock => "try-lock",
            Part::Groups => "groups",
            Part::Members => "members",
            Part::Watch => return None,
            Part::Lead => "lead",
            Part::Leader => "leader",
        })
    }

    fn rust(self, support: &Support) -> bool {
        match self {
            Part::Lock | Part::TryLock => support.locks,
            Part::Groups | Part::Members => support.groups,
            Part::Watch => support.watch != WatchKind::None,
            Part::Lead | Part::Leader => support.election,
        }
    }
}

/// One case of the suite.
pub struct Case {
    pub name: &'static str,
    pub needs: &'static [Part],
    /// For a driver-specific case: the URLs it runs against.
    pub only: Option<fn(&str) -> bool>,
    pub run: fn(Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Registers cases: `cases![name => [Part, ...], ...]`, optionally `if only_fn` after the
/// parts.
#[macro_export]
macro_rules! cases {
    ($($name:ident => [$($part:ident),*] $(if $only:path)?),* $(,)?) => {
        vec![$($crate::Case {
            name: stringify!($name),
            needs: &[$($crate::Part::$part),*],
            only: None $(.or(Some($only as fn(&str) -> bool)))?,
            run: |ctx| Box::pin($name(ctx)),
        }),*]
    };
}

/// Options a scheme's URL needs for its locks to be Python tooz's (both sides get them;
/// Python's drivers ignore options they do not know).
const INTEROP_OPTIONS: &[(&str, &str)] = &[
    // 64-bit keys by default; Python tooz's 2-byte md5 keys on request.
    ("postgresql", "lock_keys=python"),
];

/// `url` with the options its scheme needs for interop.
fn interop_url(url: &str) -> String {
    let scheme = url.split("://").next().unwrap_or_default();
    match INTEROP_OPTIONS.iter().find(|(s, _)| *s == scheme) {
        Some((_, options)) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}{options}")
        }
        None => url.to_string(),
    }
}

/// The URL under test and its Python peer.
#[derive(Clone)]
pub struct Ctx {
    pub url: String,
    pub python: PathBuf,
    pub support: Support,
}

impl Ctx {
    /// A unique name, so that cases and runs never collide.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }

    /// A started coordinator with a fresh member id.
    pub async fn coord(&self) -> Coordinator {
        self.coord_at(&self.url, self.name("rust")).await
    }

    /// A started coordinator for `member` at `url` (the URL under test with other options).
    pub async fn coord_at(&self, url: &str, member: impl Into<Id>) -> Coordinator {
        support::started(url, member).await
    }

    /// Starts `peer.py COMMAND URL ARGS...`.
    pub fn peer(&self, command: &str, args: &[&str]) -> Peer {
        self.peer_at(&self.url, command, args)
    }

    /// Starts `peer.py COMMAND url ARGS...`.
    pub fn peer_at(&self, url: &str, command: &str, args: &[&str]) -> Peer {
        let mut all = vec![command, url];
        all.extend(args);
        Peer::start(&self.python, &all)
    }

    /// Runs `peer.py COMMAND URL ARGS...` to its end: what it printed, trimmed.
    pub async fn output(&self, command: &str, args: &[&str]) -> String {
        let out = self.peer(command, args).finish().await;
        out.unwrap_or_else(|e| panic!("{e}")).trim().to_string()
    }

    /// The URL with extra query options.
    pub fn url_with(&self, query: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", self.url)
    }
}

/// Lowercase hex, as `peer.py` prints ids.
pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A URL under test; what it needs is learnt once, by its first case.
struct Target {
    url: String,
    scheme: String,
    label: String,
    setup: OnceLock<Result<(Ctx, Probe), String>>,
    /// Held by the case running against this URL.
    busy: Mutex<()>,
}

fn main() {
    let args = Arguments::from_args();
    let dir = support::TempDir::new("tooz-interop");
    let mut urls = Vec::new();
    if cfg!(feature = "file") {
        urls.push(dir.url());
    }
    if cfg!(feature = "ipc") {
        urls.push("ipc://".to_string());
    }
    if let Ok(extra) = std::env::var("TOOZ_EXTRA_TEST_URLS") {
        urls.extend(support::split_urls(&extra).iter().map(|u| interop_url(u)));
    }
    let all = cases::all();
    let mut per_url = Vec::new();
    for url in &urls {
        let scheme = url.split("://").next().unwrap_or_default().to_string();
        let label = support::url_label(&urls, url, &scheme);
        let target = Arc::new(Target {
            url: url.clone(),
            scheme,
            label,
            setup: OnceLock::new(),
            busy: Mutex::new(()),
        });
        let cases = all
            .iter()
            .filter(|c| c.only.is_none_or(|only| only(&target.url)));
        per_url.push(
            cases
                .map(|case| trial(target.clone(), case))
                .collect::<Vec<_>>(),
        );
    }
    // Taken in turns from each URL, so that the test threads work on different URLs.
    let mut trials = Vec::new();
    let longest = per_url.iter().map(Vec::len).max().unwrap_or(0);
    let mut per_url: Vec<_> = per_url.into_iter().map(Vec::into_iter).collect();
    for _ in 0..longest {
        trials.extend(per_url.iter_mut().filter_map(Iterator::next));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(dir);
    conclusion.exit();
}

fn trial(target: Arc<Target>, case: &Case) -> Trial {
    let (needs, run) = (case.needs, case.run);
    Trial::ignorable_test(format!("{}::{}", case.name, target.label), move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("runtime: {e}")))?;
        let setup = target
            .setup
            .get_or_init(|| runtime.block_on(prepare(&target.url, &target.scheme)));
        let (ctx, probe) = match setup {
            Ok(setup) => setup,
            Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
                return Err(format!("cannot use {}: {why}", target.url).into())
            }
            Err(why) => return Ok(Completion::ignored_with(why)),
        };
        for part in needs {
            if !part.rust(&ctx.support) {
                let why = format!("tooz-rs's {} driver lacks {part:?}", target.scheme);
                return Ok(Completion::ignored_with(why));
            }
            let Some(key) = part.python() else { continue };
            let answer = probe.parts.get(key).ok_or(format!("probe skipped {key}"))?;
            match answer {
                None => {}
                Some(a) if a.starts_with("NotImplemented") => {
                    let driver = format!("Python tooz {}'s {}", probe.version, target.scheme);
                    return Ok(Completion::ignored_with(format!(
                        "{driver} driver: {key} {a}"
                    )));
                }
                Some(error) => return Err(format!("Python's probe of {key}: {error}").into()),
            }
        }
        let ctx = ctx.clone();
        let _busy = target
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = runtime.block_on(async move {
            match tokio::time::timeout(CASE_TIMEOUT, tokio::spawn(run(ctx))).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(panic)) => Err(panic_message(panic)),
                Err(_) => Err(format!("case hung for more than {CASE_TIMEOUT:?}")),
            }
        });
        outcome
            .map(|()| Completion::Completed)
            .map_err(Failed::from)
    })
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}

/// Learns whether `url` can be used from both languages, and what each side implements.
async fn prepare(url: &str, scheme: &str) -> Result<(Ctx, Probe), String> {
    let python = peer::python_for(scheme);
    if !python.exists() {
        return Err(format!(
            "{} is missing (scripts/services up python-tooz)",
            python.display()
        ));
    }
    let rust = async {
        let coord = Coordinator::connect(url, "interop-probe").await?;
        coord.start().await?;
        if scheme == "ipc" {
            forget_test_groups(&coord).await;
        }
        let support = coord.support();
        coord.stop().await?;
        Ok::<_, tooz::Error>(support)
    };
    let support = match tokio::time::timeout(Duration::from_secs(20), rust).await {
        Ok(Ok(support)) => support,
        Ok(Err(e)) => return Err(format!("tooz-rs cannot use it: {e}")),
        Err(_) => return Err("tooz-rs did not start within 20 s".into()),
    };
    let probe = Probe::run(&python, url).await?;
    let ctx = Ctx {
        url: url.to_string(),
        python,
        support,
    };
    Ok((ctx, probe))
}

/// Deletes the empty groups that test runs left in the host's ipc group list (names
/// `<prefix>-<32 hex digits>`): Python's ipc driver refuses to write a list of 1022 bytes or
/// more, so a list full of them would fail every Python `create_group`.
async fn forget_test_groups(coord: &Coordinator) {
    let Ok(groups) = coord.get_groups().await else {
        return;
    };
    for group in groups {
        let generated =
            group
                .as_str()
                .and_then(|g| g.rsplit_once('-'))
                .is_some_and(|(prefix, suffix)| {
                    !prefix.is_empty()
                        && suffix.len() == 32
                        && suffix.bytes().all(|b| b.is_ascii_hexdigit())
                });
        if generated
            && coord
                .get_members(group.clone())
                .await
                .is_ok_and(|m| m.is_empty())
        {
            let _ = coord.delete_group(group).await;
        }
    }
}
