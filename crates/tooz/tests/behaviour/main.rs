//! The behaviour suite: one set of cases run against every driver URL in `TOOZ_TEST_URLS`
//! (comma-separated, a URL may list several hosts: `zookeeper://h1:2181,h2:2181`; default:
//! every driver that needs no server), plus those in
//! `TOOZ_EXTRA_TEST_URLS`. Each case × URL is its own test, named `<case>::<scheme>`.
//!
//! A case needing an API part the driver declares unsupported instead checks that the driver
//! answers `Error::NotImplemented` for it; a case needing a characteristic the driver lacks
//! is listed as ignored.
//!
//! Cases do not stop the coordinators they make: the fixture (see `fixture.rs`) stops those
//! still started when the case ends, and fails the case if one does not stop cleanly.

mod cases;
mod ctx;
mod fixture;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

use ctx::{Case, Ctx};

/// Longest a single case may run before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every driver that needs no server. zake runs three times: pushing with a lock queue;
/// polling, so that the core's diffing fallback is tested too; and waiting for locks by
/// retrying, so that the `Driver` trait's default wait (`acquire_by_retrying`) is tested too.
fn default_urls() -> String {
    let mut urls = vec![
        "zake://".to_string(),
        "zake://?watch=poll&poll_interval=0.02".into(),
        "zake://?lock_wait=retry&poll_interval=0.02".into(),
    ];
    if cfg!(feature = "file") {
        let dir = std::env::temp_dir().join(format!("tooz-behaviour-{}", std::process::id()));
        urls.push(format!("file://{}", dir.display()));
    }
    if cfg!(feature = "ipc") {
        urls.push("ipc://".into());
    }
    urls.join(",")
}

fn main() {
    if let Some(code) = ctx::child_main() {
        std::process::exit(code);
    }
    let args = Arguments::from_args();
    let mut urls = std::env::var("TOOZ_TEST_URLS").unwrap_or_else(|_| default_urls());
    if let Ok(extra) = std::env::var("TOOZ_EXTRA_TEST_URLS") {
        urls = format!("{urls},{extra}");
    }
    let urls = support::split_urls(&urls);
    let mut trials = Vec::new();
    for url in &urls {
        let mut ctx = match Ctx::probe(url) {
            Ok(ctx) => ctx,
            Err(error) => {
                let url = url.to_string();
                trials.push(Trial::test(format!("connect::{url}"), move || {
                    Err(format!("cannot use {url}: {error}").into())
                }));
                continue;
            }
        };
        ctx.scheme = support::url_label(&urls, url, &ctx.scheme);
        for case in cases::all() {
            trials.push(trial(&ctx, case));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn trial(ctx: &Ctx, case: Case) -> Trial {
    let name = format!("{}::{}", case.name, ctx.scheme);
    let ignored = case.need.is_characteristic() && !ctx.has(case.need);
    let ctx = ctx.clone();
    Trial::test(name, move || run_case(ctx, case)).with_ignored_flag(ignored)
}

fn run_case(ctx: Ctx, case: Case) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("runtime: {e}")))?;
    runtime.block_on(ctx.with_fixture(|ctx| async move {
        let run = async {
            if ctx.has(case.need) {
                (case.run)(ctx.clone()).await
            } else {
                ctx::expect_not_implemented(&ctx, case.need).await
            }
        };
        match tokio::time::timeout(CASE_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => Err(format!("case hung for more than {CASE_TIMEOUT:?}").into()),
        }
    }))
}
