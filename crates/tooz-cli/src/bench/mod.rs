//! `tooz bench`: every measure, for every URL given, in one run, with Python tooz and the
//! server's own floor alongside; a progress bar, a table, `--json`, and the generated section
//! of `docs/benchmarks.md` with SVG plots.

mod floor;
mod measures;
mod python;
mod report;

use std::future::Future;
use std::io::{self, Write};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::cli::{BenchArgs, Global};
use crate::connect;
use crate::exit::{Failure, Outcome};
use crate::output;
use measures::{Ctx, Figures};

/// The measure names, in the order they run and are shown.
pub const MEASURES: &[&str] = &[
    "memory",
    "lock_1",
    "lock_16",
    "handoff",
    "join_leave",
    "get_members_10",
    "get_members_1000",
    "get_members_10000",
    "watch",
    "failover",
];

/// A progress bar on stderr (a terminal), or one line per step (a pipe).
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    quiet: bool,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        if self.quiet {
            return;
        }
        if self.tty {
            let width = 24;
            let filled = width * (self.done - 1) / self.total.max(1);
            let bar = "#".repeat(filled) + &"-".repeat(width - filled);
            let _ = write!(
                io::stderr(),
                "\r\x1b[2K[{bar}] {}/{} {what}",
                self.done,
                self.total
            );
        } else {
            let _ = writeln!(
                io::stderr(),
                "tooz bench: {}/{} {what}",
                self.done,
                self.total
            );
        }
        let _ = io::stderr().flush();
    }

    fn finish(&self) {
        if self.tty && !self.quiet {
            let _ = write!(io::stderr(), "\r\x1b[2K");
        }
    }
}

fn figures_json(figures: Figures) -> Value {
    match figures {
        Ok(value) => value,
        Err(reason) => json!({ "na": reason }),
    }
}

async fn bounded(short: bool, fut: impl Future<Output = Figures>) -> Figures {
    let cap = if short { 30 } else { 200 };
    match tokio::time::timeout(Duration::from_secs(cap), fut).await {
        Ok(figures) => figures,
        Err(_) => Err(format!("stopped after {cap} s")),
    }
}

fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/set of this process's own limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `tooz bench URL...`.
pub async fn run(global: &Global, args: &BenchArgs) -> Outcome {
    raise_open_files();
    let mut progress = Progress {
        total: args.urls.len() * (MEASURES.len() + 2),
        done: 0,
        tty: output::stderr_is_tty(),
        quiet: args.memory_only,
    };
    let mut backends = Vec::new();
    for (index, url) in args.urls.iter().enumerate() {
        backends.push(backend(args, url, index, &mut progress).await);
    }
    progress.finish();
    let document = json!({
        "machine": report::machine(args.python.as_deref()),
        "short": args.short,
        "backends": backends,
    });
    // Whatever a driver or Python tooz put in an error figure, no secret of a URL is shown.
    let document: Value = serde_json::from_str(&crate::secrets::scrub(&document.to_string()))
        .map_err(|e| Failure::msg(format!("bench report: {e}")))?;
    if let Some(path) = &args.save {
        std::fs::write(path, format!("{document:#}\n"))
            .map_err(|e| Failure::msg(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.docs {
        report::write_docs(path, &document)
            .map_err(|e| Failure::msg(format!("cannot write {}: {e}", path.display())))?;
    }
    if global.json {
        output::json(&document)?;
    } else {
        output::print(&report::table(&document))?;
    }
    Ok(0)
}

async fn backend(args: &BenchArgs, url: &str, index: usize, progress: &mut Progress) -> Value {
    let driver = tooz::DriverUrl::parse(url)
        .ok()
        .and_then(|u| tooz::drivers::lookup(u.scheme()))
        .map(|e| e.scheme)
        .unwrap_or("?");
    let shown = tooz::DriverUrl::redact(url);
    let ctx = Ctx {
        url: url.to_string(),
        short: args.short,
        prefix: format!("bench{}x{index}", std::process::id()),
        in_process: driver == "zake",
    };
    let mut rust = Map::new();
    if args.memory_only {
        let figures = bounded(args.short, measures::memory(&ctx)).await;
        rust.insert("memory".into(), figures_json(figures));
        return json!({"url": shown, "driver": driver, "tooz_rs": rust});
    }
    for &name in MEASURES {
        progress.step(&format!("{driver}: {name}"));
        match name {
            "get_members_10" => {
                for (tier, figures) in bounded_tiers(args.short, measures::get_members(&ctx)).await
                {
                    rust.insert(format!("get_members_{tier}"), figures_json(figures));
                }
            }
            "get_members_1000" | "get_members_10000" => {}
            _ => {
                let figures = bounded(args.short, async {
                    match name {
                        "memory" => measures::memory_in_child(&ctx).await,
                        "lock_1" => measures::lock_throughput(&ctx, 1).await,
                        "lock_16" => measures::lock_throughput(&ctx, 16).await,
                        "handoff" => measures::handoff(&ctx).await,
                        "join_leave" => measures::join_leave(&ctx).await,
                        "watch" => measures::watch(&ctx).await,
                        _ => measures::failover(&ctx).await,
                    }
                })
                .await;
                rust.insert(name.to_string(), figures_json(figures));
            }
        }
    }
    progress.step(&format!("{driver}: floor"));
    let (floor, server) =
        match tokio::time::timeout(Duration::from_secs(60), floor::measure(&ctx)).await {
            Ok(measured) => measured,
            Err(_) => (Err("stopped after 60 s".into()), None),
        };
    progress.step(&format!("{driver}: Python tooz"));
    let (python, python_from) = match python::interpreter(args.python.as_deref(), driver) {
        None => {
            let why = format!(
                "no Python interpreter given (--python, TOOZ_BENCH_PYTHON or {})",
                python::scheme_variable(driver)
            );
            (json!({ "na": why }), None)
        }
        Some((python, from)) => {
            let figures = python::run(&python, &args.python_script, url, args.short).await;
            let from = from.map(|variable| {
                json!({"variable": variable, "interpreter": python.display().to_string()})
            });
            (figures_json(figures), from)
        }
    };
    progress.step(&format!("{driver}: Python via tooz-rs"));
    let python_rs = match &args.python_rs {
        None => json!({"na": "no interpreter with the tooz-rs package (--python-rs)"}),
        Some(python) => {
            let url = format!("rs+{url}");
            figures_json(python::run(python, &args.python_script, &url, args.short).await)
        }
    };
    json!({
        "url": shown,
        "driver": driver,
        "server": server,
        "tooz_rs": rust,
        "floor": figures_json(floor),
        "python": python,
        "python_from": python_from,
        "python_rs": python_rs,
    })
}

async fn bounded_tiers(
    short: bool,
    fut: impl Future<Output = Vec<(String, Figures)>>,
) -> Vec<(String, Figures)> {
    let cap = if short { 60 } else { 300 };
    match tokio::time::timeout(Duration::from_secs(cap), fut).await {
        Ok(tiers) => tiers,
        Err(_) => measures::member_tiers(short)
            .iter()
            .map(|(t, _)| (t.to_string(), Err(format!("stopped after {cap} s"))))
            .collect(),
    }
}

/// `tooz bench-watcher GROUP`: prints `ready`, then `joined <monotonic ns>` or `left` per
/// event, until stdin has a line or ends (or ten minutes pass).
pub async fn watcher(global: &Global, group: &str) -> Outcome {
    let coord = connect::coordinator(global).await?;
    let _ = coord.create_group(group).await;
    let mut events = coord.watch_group(group).await?;
    output::print("ready\n")?;
    std::thread::spawn(|| {
        let mut line = String::new();
        let _ = io::stdin().read_line(&mut line);
        std::process::exit(0);
    });
    let watching = async {
        while let Some(event) = events.next().await {
            let line = match event {
                tooz::GroupEvent::Joined { .. } => {
                    format!("joined {}\n", measures::monotonic_ns())
                }
                tooz::GroupEvent::Left { .. } => "left\n".to_string(),
                _ => continue,
            };
            output::print(&line)?;
        }
        Ok::<(), Failure>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(600), watching).await;
    connect::stop(&coord).await;
    Ok(0)
}
