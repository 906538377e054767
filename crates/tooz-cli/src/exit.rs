//! Exit statuses and the one-line error that goes with a failure.

use std::fmt;

/// tooz itself failed (bad URL, backend error, unknown group, ...), outside `lock`, `elect`
/// and `group join -- CMD`.
pub const FAILURE: u8 = 1;
/// The command line is wrong (unknown option, bad value, missing argument).
pub const USAGE: u8 = 2;
/// The lock or leadership was not obtained: held and `--no-wait`, or `--timeout` expired.
/// 75 is EX_TEMPFAIL from sysexits.h: try again later.
pub const BUSY: u8 = 75;
/// The lock, leadership or membership was lost while CMD ran, or CMD outlived `--max-hold`;
/// CMD was stopped.
pub const LOST: u8 = 76;
/// tooz itself failed while wrapping CMD (the status env(1) and timeout(1) use), so that it
/// cannot be mistaken for a status of CMD.
pub const WRAPPER_FAILURE: u8 = 125;
/// CMD was found but could not be run.
pub const CANNOT_RUN: u8 = 126;
/// CMD was not found.
pub const NOT_FOUND: u8 = 127;
/// Base of the status of a CMD (or a wait) ended by signal N: 128+N.
pub const SIGNALLED: u8 = 128;

/// The exit-status table shown by `--help` of `tooz`, `tooz lock` and `tooz elect`.
pub const STATUS_HELP: &str = "\
Exit status:
  0      success, for the commands that run no CMD
  any    lock, elect and group join -- CMD exit with CMD's own status, except:
  1      tooz failed (bad URL, backend error, no such group, ...)
  2      usage error (unknown option, bad value)
  75     lock or leadership not obtained: held with --no-wait, or --timeout expired
         (--conflict-exit-code N makes it N)
  76     lock, leadership or membership lost while CMD ran, or CMD outlived --max-hold;
         CMD was stopped (SIGTERM, then SIGKILL after --kill-after)
         (--lost-exit-code N makes it N)
  125    tooz failed while wrapping CMD (lock, elect, group join -- CMD)
  126    CMD could not be run
  127    CMD not found
  128+N  CMD died of signal N, or tooz was stopped by signal N while waiting";

/// The rows of [`STATUS_HELP`], for the man page.
pub const STATUS_ROWS: &[(&str, &str)] = &[
    ("0", "Success, for the commands that run no CMD."),
    (
        "any",
        "lock, elect and group join -- CMD exit with CMD's own status, except as below.",
    ),
    (
        "1",
        "tooz failed: bad URL, backend error, no such group, ...",
    ),
    ("2", "Usage error: unknown option, bad value."),
    (
        "75",
        "The lock or leadership was not obtained: held with --no-wait, or --timeout expired \
         (--conflict-exit-code N makes it N).",
    ),
    (
        "76",
        "The lock, leadership or membership was lost while CMD ran, or CMD outlived \
         --max-hold; CMD was stopped (SIGTERM, then SIGKILL after --kill-after) \
         (--lost-exit-code N makes it N).",
    ),
    (
        "125",
        "tooz failed while wrapping CMD (lock, elect, group join -- CMD).",
    ),
    ("126", "CMD could not be run."),
    ("127", "CMD was not found."),
    (
        "128+N",
        "CMD died of signal N, or tooz was stopped by signal N while waiting.",
    ),
];

/// Why tooz stops with a non-zero status: the status and the line to print on stderr
/// (none when the message was already given, or for a broken pipe).
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub status: u8,
    /// The message, without the `tooz: ` prefix; empty for none.
    pub message: String,
}

impl Failure {
    /// A failure with a status and a message.
    pub fn new(status: u8, message: impl fmt::Display) -> Self {
        Failure {
            status,
            message: message.to_string(),
        }
    }

    /// A plain failure of tooz (status 1).
    pub fn msg(message: impl fmt::Display) -> Self {
        Failure::new(FAILURE, message)
    }

    /// A usage error (status 2).
    pub fn usage(message: impl fmt::Display) -> Self {
        Failure::new(USAGE, message)
    }

    /// Stops quietly with `status`.
    pub fn silent(status: u8) -> Self {
        Failure {
            status,
            message: String::new(),
        }
    }
}

impl From<tooz::Error> for Failure {
    fn from(error: tooz::Error) -> Self {
        Failure::msg(error)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            // Whoever read our output has gone: end as a process killed by SIGPIPE would.
            return Failure::silent(SIGNALLED + libc::SIGPIPE as u8);
        }
        Failure::msg(error)
    }
}

/// What a command ends with: `Ok(status)` or a failure.
pub type Outcome = Result<u8, Failure>;
