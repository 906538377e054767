//! The command line, as clap definitions: the single source of `--help`, the completions and
//! the man pages.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::exit;

/// Distributed coordination from the shell: locks, elections, groups, partitions.
///
/// Every command talks to the backend named by --url (or TOOZ_URL). Without one, tooz uses the
/// file driver in the user's runtime directory ($XDG_RUNTIME_DIR/tooz, or <tmp>/tooz-<uid>),
/// which coordinates the processes of this host with no server.
#[derive(Debug, Parser)]
#[command(name = "tooz", version, about, long_about, after_long_help = exit::STATUS_HELP)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Backend URL, e.g. file:///run/lock/tooz or redis://127.0.0.1:6379 [default: file driver
    /// in the user's runtime dir]
    #[arg(
        long,
        global = true,
        env = "TOOZ_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// Member id of this process [default: <hostname>-<pid>]
    #[arg(
        long,
        global = true,
        env = "TOOZ_MEMBER",
        hide_env_values = true,
        value_name = "ID",
        value_parser = non_empty
    )]
    pub member: Option<String>,

    /// Log the library's work on stderr: -v events, -vv also debug events and spans with their
    /// durations, -vvv everything (TOOZ_LOG or RUST_LOG, e.g. TOOZ_LOG=tooz=debug, take
    /// precedence)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Machine-readable JSON on stdout (JSON Lines for streams); commands running CMD leave
    /// stdout to it. Names are exact: a JSON string, or {"hex": "..."} for a name that is not
    /// UTF-8
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD while holding a lock (like flock(1))
    ///
    /// CMD runs in its own process group with TOOZ_LOCK_NAME and TOOZ_FENCING_TOKEN in its
    /// environment; the token strictly increases with every acquisition of NAME. tooz exits
    /// with CMD's status (128+N if CMD died of signal N). SIGINT, SIGTERM, SIGHUP, SIGQUIT,
    /// SIGUSR1 and SIGUSR2 sent to tooz are forwarded to CMD's process group. The lock is
    /// released when CMD ends, whatever the cause. If the lock is lost while CMD runs (its
    /// session ended, it expired or was broken), or CMD outlives --max-hold, tooz sends CMD
    /// SIGTERM, then SIGKILL after --kill-after, and exits with status 76. CMD's stdout is its
    /// own: tooz writes only to stderr.
    ///
    /// A watchdog process guards CMD's process group: if tooz dies, by any signal including
    /// SIGKILL, the group gets SIGKILL at once (the lock is gone with tooz). Where locks expire
    /// unless refreshed (--ttl: redis, memcached, etcd, consul), the group also gets SIGKILL
    /// when tooz has not confirmed a refresh for half the lock's lifetime, as when tooz is
    /// paused, so that CMD is stopped before another process can be granted the lock; tooz
    /// then exits 76. What no supervisor can close: a pause of CMD itself (or of every process
    /// on the host) and descendants that leave CMD's process group (setsid); with ZooKeeper,
    /// whose client keeps its session alive by itself, there is no refresh to watch. Hand
    /// TOOZ_FENCING_TOKEN to the resource the lock protects, so that it can refuse a stale
    /// holder: that is the real protection.
    #[command(after_long_help = exit::STATUS_HELP, allow_negative_numbers = true)]
    Lock(LockArgs),

    /// Run CMD only while leader of GROUP
    ///
    /// Campaigns for the leadership of GROUP (creating the group if needed), then runs CMD with TOOZ_GROUP, TOOZ_MEMBER,
    /// TOOZ_LEADER_TERM and TOOZ_FENCING_TOKEN (both the term, which increases with every new
    /// leader) in its environment. Exit statuses, signals, loss handling and the watchdog are
    /// those of `tooz lock`; the leadership is given up when CMD ends.
    #[command(after_long_help = exit::STATUS_HELP, allow_negative_numbers = true)]
    Elect(ElectArgs),

    /// Group membership: list, create, delete, members, join, leave, watch
    #[command(subcommand)]
    Group(GroupCommand),

    /// Print the current leader of GROUP (nothing, or null with --json, if it has none; an
    /// error if there is no leader and GROUP does not exist)
    Leader {
        /// The group.
        #[arg(value_parser = non_empty)]
        group: String,
    },

    /// Print the members owning KEY among GROUP's current members
    ///
    /// An empty group owns nothing: no line (with --json, "owners": []). A group that does
    /// not exist is an error, as for `tooz leader`.
    ///
    /// Uses Python tooz's placement: a consistent hash ring with 32 points per unit of weight
    /// (a member's weight is its `weight` capability, 1 otherwise), KEY hashed as its UTF-8
    /// bytes. Any process computing it over the same members gets the same owners.
    Partition(PartitionArgs),

    /// List the drivers: scheme, aliases, availability, characteristics, supported API
    Drivers,

    /// Measure a backend: locks, hand-off, membership, watch, fail-over, memory, the floor
    ///
    /// For each URL, in one run: lock acquire + release (1 client; 16 clients on 16 locks),
    /// contended hand-off, join + leave, get_members with 10, 1,000 and 10,000 members, watch
    /// latency seen by another process, election fail-over, resident memory, and the server's
    /// own round trip (the floor); with --python, Python tooz's figures in the same run.
    /// Every loop is bounded in count and time; nothing is asserted.
    ///
    /// One driver's URLs can be measured with another Python tooz: the environment variable
    /// TOOZ_BENCH_PYTHON_<SCHEME> (the driver's scheme upper-cased, other characters than
    /// letters and digits as `_`) names its interpreter, e.g. TOOZ_BENCH_PYTHON_ETCD3 a venv
    /// with tooz 4.3 (the last with the gRPC `etcd3://` driver) while --python has tooz 9.1
    /// for the others (with etcd3gw for `etcd3+http://`).
    Bench(BenchArgs),

    /// The watcher process of `tooz bench` (prints each join with a monotonic timestamp)
    #[command(hide = true)]
    BenchWatcher {
        /// The group to watch.
        group: String,
    },

    /// The watchdog of CMD's process group (started by lock, elect and group join -- CMD)
    #[command(hide = true)]
    Watchdog {
        /// CMD's process group.
        pgid: i32,
    },

    /// Print a shell completion script
    ///
    /// bash: tooz completions bash > ~/.local/share/bash-completion/completions/tooz
    ///
    /// zsh: tooz completions zsh > "${fpath[1]}/_tooz"
    ///
    /// fish: tooz completions fish > ~/.config/fish/completions/tooz.fish
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Print a man page (roff), for tooz or one of its commands
    ///
    /// tooz man | man -l -     or     tooz man lock > tooz-lock.1
    Man {
        /// The command whose page to print, e.g. `lock` or `group join` [default: tooz itself]
        command: Vec<String>,
    },
}

/// How long to wait for a lock or leadership.
#[derive(Debug, Args)]
pub struct Wait {
    /// Give up after S seconds (also 250ms, 2m, 1h) with status 75
    #[arg(long, value_name = "S", value_parser = duration)]
    pub timeout: Option<Duration>,

    /// Fail at once with status 75 if it is held
    #[arg(long, conflicts_with = "timeout")]
    pub no_wait: bool,

    /// The status for "not obtained" instead of 75, to tell it from CMD's own statuses (as
    /// flock's --conflict-exit-code)
    #[arg(long, value_name = "N", default_value_t = exit::BUSY)]
    pub conflict_exit_code: u8,
}

/// What to do with CMD when the lock goes.
#[derive(Debug, Args)]
pub struct Hold {
    /// After SIGTERM, wait S seconds for CMD to end before SIGKILL
    #[arg(long, value_name = "S", value_parser = duration, default_value = "5")]
    pub kill_after: Duration,

    /// Stop CMD (SIGTERM, then SIGKILL) and exit 76 if it still runs after S seconds
    #[arg(long, value_name = "S", value_parser = positive_duration)]
    pub max_hold: Option<Duration>,

    /// The status for "lost while CMD ran" instead of 76, to tell it from CMD's own statuses
    #[arg(long, value_name = "N", default_value_t = exit::LOST)]
    pub lost_exit_code: u8,
}

/// `tooz lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The lock name (with the file driver: a relative path inside its directory)
    #[arg(value_parser = non_empty)]
    pub name: String,

    /// How long to wait.
    #[command(flatten)]
    pub wait: Wait,

    /// Lifetime of the lock if tooz stops renewing it, for drivers whose locks expire (sent as
    /// the URL option lock_timeout); ignored by drivers whose locks end with their holder's
    /// process or session (file, ipc)
    #[arg(long, value_name = "S", value_parser = positive_duration)]
    pub ttl: Option<Duration>,

    /// What to do with CMD when the lock goes.
    #[command(flatten)]
    pub hold: Hold,

    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `tooz elect`.
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// The group to lead.
    #[arg(value_parser = non_empty)]
    pub group: String,

    /// How long to wait.
    #[command(flatten)]
    pub wait: Wait,

    /// What to do with CMD when the leadership goes.
    #[command(flatten)]
    pub hold: Hold,

    /// The command to run while leader, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `tooz bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backend URLs to measure, one after the other (e.g. zake:// redis://127.0.0.1:6379)
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,

    /// Tiny counts and fractions of a second per measure: checks that the harness runs
    #[arg(long)]
    pub short: bool,

    /// Python interpreter with tooz installed, to measure Python tooz in the same run (one
    /// driver's URLs: TOOZ_BENCH_PYTHON_<SCHEME> when set, e.g. TOOZ_BENCH_PYTHON_ETCD3)
    #[arg(
        long,
        env = "TOOZ_BENCH_PYTHON",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub python: Option<std::path::PathBuf>,

    /// Python interpreter with the tooz-rs package (crates/tooz-py) installed, to measure
    /// Python tooz's API over tooz-rs's drivers (`rs+<scheme>://` URLs) in the same run
    #[arg(
        long,
        env = "TOOZ_BENCH_PYTHON_RS",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub python_rs: Option<std::path::PathBuf>,

    /// The Python side of the harness
    #[arg(long, value_name = "PATH", default_value = "bench/python_bench.py")]
    pub python_script: std::path::PathBuf,

    /// Measure only resident memory (run as a fresh child process by `tooz bench`)
    #[arg(long, hide = true)]
    pub memory_only: bool,

    /// Also write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub save: Option<std::path::PathBuf>,

    /// Regenerate the generated section of this Markdown file (and SVG plots beside it)
    #[arg(long, value_name = "FILE")]
    pub docs: Option<std::path::PathBuf>,
}

/// `tooz partition`.
#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// The group whose members share the keys.
    #[arg(value_parser = non_empty)]
    pub group: String,
    /// The key to place.
    pub key: String,
    /// How many distinct owners to return
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
    /// Leave this member out (repeatable), as when it is draining
    #[arg(long, value_name = "MEMBER")]
    pub ignore: Vec<String>,
}

/// `tooz group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the groups
    List,
    /// Create a group
    Create {
        /// The group.
        #[arg(value_parser = non_empty)]
        group: String,
    },
    /// Delete a group that has no members
    Delete {
        /// The group.
        #[arg(value_parser = non_empty)]
        group: String,
    },
    /// List a group's members
    Members {
        /// The group.
        #[arg(value_parser = non_empty)]
        group: String,
        /// Show each member's capabilities too
        #[arg(long)]
        caps: bool,
    },
    /// Join a group (creating it if needed) while CMD runs, or until interrupted
    ///
    /// The membership lasts as long as this process: while CMD runs (with TOOZ_GROUP and
    /// TOOZ_MEMBER in its environment; signals, exit status and the watchdog that kills CMD's
    /// process group if tooz dies as for `tooz lock`), or without CMD until SIGINT, SIGTERM or
    /// SIGHUP. It is left on exit. If the member is removed meanwhile (by `tooz group leave`
    /// from another process, by expiry, or with the session), CMD is stopped (SIGTERM, then
    /// SIGKILL after --kill-after) and tooz exits 76.
    Join(JoinArgs),
    /// Remove a member from a group (e.g. one left behind by a crashed process)
    ///
    /// Needs --member: the member to remove.
    Leave {
        /// The group.
        #[arg(value_parser = non_empty)]
        group: String,
    },
    /// Print joins and leaves as they happen, until interrupted
    ///
    /// With --json, the first line is {"event":"watching","group":...,"members":[...]} with the
    /// members at the start, then one {"event":"joined"|"left",...} line per change.
    Watch {
        /// The group.
        #[arg(value_parser = non_empty)]
        group: String,
    },
}

/// `tooz group join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The group.
    #[arg(value_parser = non_empty)]
    pub group: String,

    /// Capabilities as text
    #[arg(long, value_name = "TEXT", group = "capabilities")]
    pub caps: Option<String>,

    /// Capabilities as JSON, stored as the matching msgpack value (e.g. '{"zone":"a"}')
    #[arg(long, value_name = "JSON", group = "capabilities", value_parser = json_value)]
    pub caps_json: Option<serde_json::Value>,

    /// Capabilities {"weight": N}: this member's share in `tooz partition`
    #[arg(long, value_name = "N", group = "capabilities")]
    pub weight: Option<u32>,

    /// If the membership is lost while CMD runs: after SIGTERM, wait S seconds before SIGKILL
    #[arg(long, value_name = "S", value_parser = duration, default_value = "5")]
    pub kill_after: Duration,

    /// The status for "membership lost" instead of 76, to tell it from CMD's own statuses
    #[arg(long, value_name = "N", default_value_t = exit::LOST)]
    pub lost_exit_code: u8,

    /// The command to run while a member, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text.to_string())
    }
}

fn json_value(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// Parses `5`, `0.5`, `250ms`, `2s`, `1m` or `1h` (zero allowed): the grammar of the URL
/// options too ([`tooz::duration`]).
pub fn duration(text: &str) -> Result<Duration, String> {
    tooz::duration(text).ok_or_else(|| {
        format!(
            "`{}` is not a duration (expected seconds, e.g. 5, 0.5, 250ms, 2m, 1h; at most a year)",
            text.trim()
        )
    })
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        for bad in ["", "-1", "abc", "5x", "nan", "inf"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(positive_duration("0").is_err());
    }
}
