//! The `tooz` command: locks, elections, groups and partitions from the shell.
//!
//! One module per command family (`lock`, `elect`, `group`, `partition`, `drivers`,
//! `manual`, `bench`), with `cli` (the clap definitions), `connect` (URL, member,
//! coordinator), `child` (running and supervising CMD), `watchdog` (the process that stops
//! CMD's group when tooz dies or stops confirming its lease), `membership` (noticing a lost
//! membership), `names` (exact names for scripts), `secrets` (URL secrets kept out of output),
//! `logs` (tracing on stderr), `output` (terminal, JSON, spinner) and `exit` (statuses).

// The doc comments of `cli` are the `--help` text, written for a terminal, not for rustdoc.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod bench;
mod child;
mod cli;
mod connect;
mod drivers;
mod elect;
mod exit;
mod group;
mod lock;
mod logs;
mod manual;
mod membership;
mod names;
mod output;
mod partition;
mod secrets;
mod watchdog;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, GroupCommand};
use crate::exit::{Failure, Outcome};

fn main() -> ExitCode {
    output::quiet_panics();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return ExitCode::from(usage_error(error, &args)),
    };
    if let Command::Watchdog { pgid } = cli.command {
        return watchdog::run(pgid);
    }
    let bench_urls = match &cli.command {
        Command::Bench(args) => args.urls.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    secrets::register(cli.global.url.iter().map(String::as_str).chain(bench_urls));
    if let Err(failure) = logs::init(cli.global.verbose) {
        output::error_line(&failure.message);
        return ExitCode::from(failure.status);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error_line(&format!("cannot start: {error}"));
            return ExitCode::from(exit::FAILURE);
        }
    };
    let outcome = runtime.block_on(run(&cli));
    // A lock wait may still sit in a blocking thread (the kernel frees it as we exit).
    runtime.shutdown_background();
    let status = match outcome {
        Ok(status) => status,
        Err(failure) => {
            if !failure.message.is_empty() {
                output::error_line(&failure.message);
            }
            failure.status
        }
    };
    ExitCode::from(status)
}

/// True for the commands that wrap CMD, whose own failures use status 125.
fn wraps_cmd(command: &Command) -> bool {
    match command {
        Command::Lock(_) | Command::Elect(_) => true,
        Command::Group(GroupCommand::Join(args)) => !args.command.is_empty(),
        _ => false,
    }
}

async fn run(cli: &Cli) -> Outcome {
    let global = &cli.global;
    let outcome = match &cli.command {
        Command::Lock(args) => lock::run(global, args).await,
        Command::Elect(args) => elect::run(global, args).await,
        Command::Group(command) => group::run(global, command).await,
        Command::Leader { group } => elect::leader(global, group).await,
        Command::Partition(args) => partition::run(global, args).await,
        Command::Drivers => drivers::run(global),
        Command::Bench(args) => bench::run(global, args).await,
        Command::BenchWatcher { group } => bench::watcher(global, group).await,
        Command::Watchdog { .. } => Ok(0),
        Command::Completions { shell } => manual::completions(*shell),
        Command::Man { command } => manual::man(command),
    };
    let (conflict, lost) = chosen_statuses(&cli.command);
    match outcome {
        Err(failure) if failure.status == exit::FAILURE && wraps_cmd(&cli.command) => {
            Err(Failure {
                status: exit::WRAPPER_FAILURE,
                ..failure
            })
        }
        // tooz's own 75 and 76 (failures, never CMD's statuses) as the user chose them.
        Err(failure) if failure.status == exit::BUSY => Err(Failure {
            status: conflict,
            ..failure
        }),
        Err(failure) if failure.status == exit::LOST => Err(Failure {
            status: lost,
            ..failure
        }),
        other => other,
    }
}

/// The statuses chosen for "not obtained" and "lost" (`--conflict-exit-code`,
/// `--lost-exit-code`), 75 and 76 unless given.
fn chosen_statuses(command: &Command) -> (u8, u8) {
    match command {
        Command::Lock(args) => (args.wait.conflict_exit_code, args.hold.lost_exit_code),
        Command::Elect(args) => (args.wait.conflict_exit_code, args.hold.lost_exit_code),
        Command::Group(GroupCommand::Join(args)) => (exit::BUSY, args.lost_exit_code),
        _ => (exit::BUSY, exit::LOST),
    }
}

/// Reports a command-line error in one line (`tooz: <what> (see 'tooz lock --help')`) and
/// returns its status; help and version requests print as usual.
fn usage_error(error: clap::Error, args: &[OsString]) -> u8 {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            return exit::USAGE;
        }
        _ => {}
    }
    output::error_line(&one_line(&error.render().to_string(), args));
    exit::USAGE
}

/// The first paragraph of a clap error, without its `error:` prefix, with clap's tips
/// (`tip: a similar argument exists: '--timeout'`), followed by where to find help.
fn one_line(rendered: &str, args: &[OsString]) -> String {
    let what = rendered.split("\n\n").next().unwrap_or(rendered).trim();
    let what = what.strip_prefix("error:").unwrap_or(what).trim();
    let mut line = what.split_whitespace().collect::<Vec<_>>().join(" ");
    for tip in rendered
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("tip:"))
    {
        line.push_str("; ");
        line.push_str(&tip.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    format!("{line} (see '{} --help')", command_path(args).join(" "))
}

/// The subcommands named in `args` (`tooz group join`), as far as they are known.
fn command_path(args: &[OsString]) -> Vec<String> {
    let root = Cli::command();
    let mut path = vec![root.get_name().to_string()];
    let mut current = &root;
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let takes_value = !long.contains('=')
                && current
                    .get_arguments()
                    .chain(root.get_arguments())
                    .any(|a| a.get_long() == Some(long) && a.get_action().takes_values());
            if takes_value {
                words.next();
            }
        } else if let Some(sub) = current.find_subcommand(word.as_ref()) {
            path.push(sub.get_name().to_string());
            current = sub;
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let error = Cli::try_parse_from(&args).unwrap_err();
        one_line(&error.render().to_string(), &args)
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_option() {
        let line = error_of(&["tooz", "lock", "x", "--timeout", "abc", "--", "true"]);
        assert!(line.contains("--timeout"), "{line}");
        assert!(line.contains("'tooz lock --help'"), "{line}");
        assert!(!line.contains('\n'));
        let line = error_of(&["tooz", "lock", "x", "--frobnicate", "--", "true"]);
        assert!(line.contains("--frobnicate"), "{line}");
        let line = error_of(&["tooz", "lock", "x"]);
        assert!(line.contains("CMD"), "{line}");
        let line = error_of(&["tooz", "frobnicate"]);
        assert!(line.contains("frobnicate"), "{line}");
        let line = error_of(&[
            "tooz", "--member", "lock", "group", "join", "g", "--weight", "x",
        ]);
        assert!(line.contains("'tooz group join --help'"), "{line}");
    }
}
