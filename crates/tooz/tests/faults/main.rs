//! The fault suite: the same fault cases run against every network driver URL in
//! `TOOZ_EXTRA_TEST_URLS` (comma-separated; `scripts/test` fills it with the URLs of the running
//! servers). Each case × URL is its own test, named `<case>::<scheme>`.
//!
//! Faults are injected by a [`tooz_testkit::FaultProxy`] in front of every server the URL
//! names (all members of an ensemble; under Sentinel, the master, named to the client by a
//! Sentinel of the suite's own), by killing a child process (this binary re-executed in child
//! mode), and by restarting the servers of `scripts/services` behind the URL. The suite adds
//! small timeouts to each URL and checks the bounds its driver documents for them; both are
//! in `bounds.rs`. A case the URL's shape gives no way to run (no TCP server to stand a proxy
//! in front of; no `scripts/services` server behind the URL) is listed as ignored, with the
//! reason in its name.
//!
//! Cases restart and cut off shared servers, so the suite runs one test at a time unless
//! `--test-threads` says otherwise. A server it cannot reach fails the run under `CI=true`;
//! otherwise its cases are ignored, saying so.

mod bounds;
mod cases;
mod child;
mod servers;
#[path = "../support/mod.rs"]
mod support;
mod target;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use tooz::{Coordinator, Support};

use bounds::Bounds;
use servers::Member;
use target::{Parsed, Proxied, Shape};

/// A case's outcome.
pub type Outcome = Result<(), Failed>;

/// What a case needs beyond a reachable server with locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing more.
    Server,
    /// A proxy between the client and every server it uses.
    Proxy,
    /// The `scripts/services` servers behind the URL, to restart them.
    Restart,
}

/// One case of the suite.
pub struct Case {
    pub name: &'static str,
    pub need: Need,
    pub run: fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

/// The URL under test, as a case sees it.
#[derive(Clone)]
pub struct Ctx {
    /// The URL with the suite's options.
    pub url: String,
    pub bounds: Bounds,
    pub support: Support,
    parsed: Parsed,
    shape: Shape,
    /// The running members of `scripts/services`, as listed when the suite started.
    members: Arc<Vec<Member>>,
}

impl Ctx {
    /// A unique name, so that cases and runs never collide.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }

    /// A started coordinator at `url` for member `member`.
    pub async fn coord(&self, url: &str, member: &str) -> Coordinator {
        support::started(url, member).await
    }

    /// Every server of the URL behind a fault proxy (for cases that need [`Need::Proxy`]);
    /// under Sentinel, the master behind one, named by a Sentinel of the suite's own.
    pub async fn proxied(&self) -> Proxied {
        match &self.shape {
            Shape::Hosts(servers) => {
                Proxied::start(&self.parsed, servers, self.bounds.options).await
            }
            Shape::Sentinel { sentinels, master } => {
                let (sentinels, master) = (sentinels.clone(), master.clone());
                let port = tokio::task::spawn_blocking(move || {
                    servers::sentinel_master(&sentinels, &master)
                })
                .await
                .expect("asking the Sentinels")
                .unwrap_or_else(|why| panic!("{why}"));
                let master = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                Proxied::start_sentinel(&self.parsed, master, self.bounds.options)
                    .await
                    .unwrap_or_else(|why| panic!("{why}"))
            }
            Shape::Unproxiable(why) => panic!("no proxy: {why}"),
        }
    }

    /// Restarts the `scripts/services` members the URL's clients use (for [`Need::Restart`]):
    /// the servers it names, or under Sentinel the master. Returns what was restarted.
    pub async fn restart_servers(&self) -> Result<String, String> {
        let ports: Vec<u16> = match &self.shape {
            Shape::Hosts(servers) => servers.iter().map(|(_, a)| a.port()).collect(),
            Shape::Sentinel { sentinels, master } => {
                let (sentinels, master) = (sentinels.clone(), master.clone());
                let port = tokio::task::spawn_blocking(move || {
                    servers::sentinel_master(&sentinels, &master)
                })
                .await
                .map_err(|e| e.to_string())??;
                vec![port]
            }
            Shape::Unproxiable(why) => return Err(why.clone()),
        };
        let mut names = Vec::new();
        let mut server = None;
        for port in ports {
            let member = servers::on_port(&self.members, port)
                .ok_or_else(|| format!("no scripts/services member listens on port {port}"))?;
            server = Some(member.server.clone());
            names.push(member.name.clone());
        }
        let server = server.ok_or("no server")?;
        servers::restart(&server, &names, &self.members).await?;
        Ok(names.join(","))
    }
}

fn main() {
    if let Some(code) = child::child_main() {
        std::process::exit(code);
    }
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let list = std::env::var("TOOZ_EXTRA_TEST_URLS").unwrap_or_default();
    let urls = support::split_urls(&list);
    if urls.is_empty() {
        eprintln!("faults: TOOZ_EXTRA_TEST_URLS names no URL; nothing to test");
    }
    let members = Arc::new(if urls.is_empty() {
        Vec::new()
    } else {
        servers::members()
    });
    let mut trials = vec![Trial::test("harness::url_rewriting", || {
        target::self_check().map_err(Failed::from)
    })];
    for url in &urls {
        trials.extend(trials_for(url, &urls, &members));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The trials of `url`: every case, or one failing `connect` trial.
fn trials_for(url: &str, urls: &[String], members: &Arc<Vec<Member>>) -> Vec<Trial> {
    let scheme = url.split("://").next().unwrap_or_default();
    let label = support::url_label(urls, url, scheme);
    let failing = |why: String| {
        vec![Trial::test(format!("connect::{label}"), move || {
            Err(why.into())
        })]
    };
    let Some(parsed) = Parsed::new(url) else {
        return failing(format!("not a URL: {url}"));
    };
    let probed = match probe(url) {
        Ok(probed) => Ok(probed),
        Err(Probe::Refused(e)) => return failing(format!("cannot use {url}: {e}")),
        Err(Probe::Unreachable(e)) if support::is_ci() => {
            return failing(format!(
                "{url} is required under CI=true but unreachable: {e}"
            ))
        }
        Err(Probe::Unreachable(e)) => Err(format!("server unreachable: {e}")),
    };
    let cases = cases::all();
    let probed = probed.and_then(|(driver, support)| {
        let bounds = bounds::of(driver).ok_or_else(|| match parsed.shape(driver) {
            Shape::Unproxiable(why) => why,
            _ => format!("bounds.rs has no bounds for the {driver} driver"),
        })?;
        if !support.locks {
            return Err(format!("the {driver} driver has no locks"));
        }
        Ok((driver, support, bounds))
    });
    let (driver, support, bounds) = match probed {
        Ok(probed) => probed,
        Err(why) => {
            return cases
                .iter()
                .map(|c| ignored(c, &label, why.clone()))
                .collect()
        }
    };
    let shape = parsed.shape(driver);
    let ctx = Ctx {
        url: parsed.with_options(bounds.options),
        bounds,
        support,
        parsed,
        shape,
        members: Arc::clone(members),
    };
    cases
        .into_iter()
        .map(|case| match unfit(&ctx, case.need) {
            Some(why) => ignored(&case, &label, why),
            None => {
                let ctx = ctx.clone();
                Trial::test(format!("{}::{label}", case.name), move || {
                    run_case(ctx, case)
                })
            }
        })
        .collect()
}

/// Why the URL's shape cannot carry a case with `need`, if it cannot.
fn unfit(ctx: &Ctx, need: Need) -> Option<String> {
    match (need, &ctx.shape) {
        (_, Shape::Unproxiable(why)) if need != Need::Server => Some(why.clone()),
        (Need::Restart, Shape::Hosts(servers)) => servers
            .iter()
            .find(|(_, addr)| servers::on_port(&ctx.members, addr.port()).is_none())
            .map(|(host, _)| format!("no scripts/services server listens on {host}")),
        (Need::Restart, Shape::Sentinel { sentinels, .. }) => sentinels
            .iter()
            .find(|addr| servers::on_port(&ctx.members, addr.port()).is_none())
            .map(|addr| format!("no scripts/services server listens on {addr}")),
        _ => None,
    }
}

/// A trial listed as ignored, with the reason in its name; run anyway (`--include-ignored`),
/// it reports itself ignored again rather than passing.
fn ignored(case: &Case, label: &str, why: String) -> Trial {
    let name = format!("{}::{label} (cannot run: {why})", case.name);
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(why))).with_ignored_flag(true)
}

/// Why a URL cannot be tested.
enum Probe {
    /// The library refuses the URL (bad URL, driver not built): always a failure.
    Refused(tooz::Error),
    /// The server did not answer.
    Unreachable(String),
}

/// Connects to `url` once: the driver's name and what it supports.
fn probe(url: &str) -> Result<(&'static str, Support), Probe> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let coord = Coordinator::connect(url, "faults-probe")
            .await
            .map_err(Probe::Refused)?;
        let started = tokio::time::timeout(Duration::from_secs(20), coord.start()).await;
        match started {
            Ok(Ok(())) => {
                let _ = coord.stop().await;
                Ok((coord.driver_name(), coord.support()))
            }
            Ok(Err(e)) => Err(Probe::Unreachable(e.to_string())),
            Err(_) => Err(Probe::Unreachable("start took more than 20 s".into())),
        }
    })
}

fn run_case(ctx: Ctx, case: Case) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("runtime: {e}")))?;
    let start = std::time::Instant::now();
    let outcome = runtime.block_on(async move {
        match tokio::time::timeout(bounds::CASE, (case.run)(ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("case hung for more than {:?}", bounds::CASE).into()),
        }
    });
    eprintln!("({} took {:.1?})", case.name, start.elapsed());
    outcome
}
