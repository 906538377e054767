//! `tooz-safety`: fault-injection safety runs for tooz drivers.
//!
//! * `tooz-safety run URL [--faults pause,kill,...] [--duration S] [--mutant X]`: ≥ 1 client
//!   processes on one lock and one election, a fenced register, a nemesis; the merged
//!   history is checked (C1–C7, see the `tooz_safety` crate) and saved with a timeline.
//! * `tooz-safety check DIR`: checks a saved run again.
//! * `tooz-safety client ...`: one client process (started by `run`).
//!
//! Exit status: 0 when every check the driver claims held, 1 when one failed, 2 on errors.

mod client;
mod clients;
mod fenced;
mod nemesis;
mod record;
mod rng;
mod runner;
mod saved;
mod survey;
mod wrap;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tooz-safety",
    about = "Fault-injection safety runs for tooz drivers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs clients under faults, then checks and saves the history.
    Run(runner::RunArgs),
    /// Checks a saved run again (its history, register log and expectations).
    Check {
        /// The run's directory.
        dir: PathBuf,
        /// Print the report as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// One client process (started by `run`).
    #[command(hide = true)]
    Client(client::ClientArgs),
}

/// Parses seconds (fractions allowed) into a duration.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match cli.command {
            Cmd::Run(args) => runner::run(args).await,
            Cmd::Check { dir, json } => check_saved(&dir, json),
            Cmd::Client(args) => client::run(args).await.map(|()| true),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("tooz-safety: {error}");
            ExitCode::from(2)
        }
    }
}

fn check_saved(dir: &std::path::Path, json: bool) -> Result<bool, String> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let history = tooz_safety::read_jsonl(&read("history.jsonl")?).map_err(|e| e.to_string())?;
    let register =
        tooz_safety::read_register_jsonl(&read("register.jsonl")?).map_err(|e| e.to_string())?;
    let expect: tooz_safety::Expectations =
        serde_json::from_str(&read("expectations.json")?).map_err(|e| e.to_string())?;
    let report = tooz_safety::check(&history, &register, &expect);
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
        return Ok(report.passed());
    }
    println!("{report}");
    for check in &report.checks {
        for violation in check.violations.iter().take(5) {
            println!(
                "  {:?}: {} (events {:?})",
                check.check, violation.message, violation.events
            );
        }
    }
    Ok(report.passed())
}
