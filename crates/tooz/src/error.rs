//! The one error type of the library, following tooz's exception taxonomy.

use crate::id::Id;

/// Result type used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, as one enum.
///
/// The variants mirror Python tooz's exceptions (`GroupNotCreated`, `MemberAlreadyExist`, ...)
/// plus the errors that Rust callers need typed (URL problems, unbuilt drivers, bad names).
/// No variant ever carries a password or token from a URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The driver cannot do this, by nature of its backend; the docs of the driver say why.
    #[error("{driver} driver does not implement {operation}: {reason}")]
    NotImplemented {
        /// Driver name (its URL scheme).
        driver: &'static str,
        /// The API part that is missing.
        operation: &'static str,
        /// Why the backend cannot carry it.
        reason: &'static str,
    },
    /// The URL names a scheme no driver answers to.
    #[error("unknown URL scheme `{scheme}`; known schemes: {known}")]
    UnknownScheme {
        /// The scheme found in the URL.
        scheme: String,
        /// Comma-separated list of the schemes this build knows.
        known: String,
    },
    /// The scheme is known but its driver is not available in this build.
    #[error("the `{scheme}` driver is {why}")]
    DriverUnavailable {
        /// The scheme asked for.
        scheme: String,
        /// Either "not implemented yet" or "not compiled in (enable cargo feature `x`)".
        why: String,
    },
    /// The URL could not be parsed or misses a required part.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with every secret replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A query option that the driver does not know.
    #[error("unknown option `{option}` for the {driver} driver; accepted options: {accepted}")]
    UnknownOption {
        /// The option name as given.
        option: String,
        /// The driver that rejected it.
        driver: &'static str,
        /// Comma-separated accepted names.
        accepted: String,
    },
    /// A query option whose value does not parse or is out of range.
    #[error("invalid value `{value}` for option `{option}`: expected {expected}")]
    InvalidOption {
        /// The option name.
        option: String,
        /// The value given (`***` for secret options).
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// The driver lacks characteristics that the caller required at connect time.
    #[error("driver `{driver}` lacks the required characteristics {missing} (it has {has})")]
    DriverChosenPoorly {
        /// The driver.
        driver: &'static str,
        /// The characteristics asked for but missing.
        missing: String,
        /// The characteristics the driver has.
        has: String,
    },
    /// A group, member or lock name that the driver cannot store.
    #[error("invalid {kind} name {name}: {reason}")]
    InvalidName {
        /// "group", "member" or "lock".
        kind: &'static str,
        /// The name, escaped and shortened for display.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The backend could not be reached or the connection broke.
    #[error("connection error: {0}")]
    Connection(String),
    /// The runtime tooz needs is missing or could not be started: a coordinator made outside
    /// a tokio runtime, `tooz::blocking` called from inside one, or its own runtime failing
    /// to start. A mistake in the program (or the host's limits), not the backend's.
    #[error("runtime error: {0}")]
    Runtime(String),
    /// An operation did not complete within its timeout.
    #[error("operation timed out: {0}")]
    OperationTimedOut(String),
    /// A lock could not be acquired (tooz's `LockAcquireFailed`).
    #[error("acquiring lock {name} failed")]
    LockAcquireFailed {
        /// The lock name.
        name: Id,
    },
    /// The group does not exist.
    #[error("group {group} does not exist")]
    GroupNotCreated {
        /// The group.
        group: Id,
    },
    /// The group already exists.
    #[error("group {group} already exists")]
    GroupAlreadyExist {
        /// The group.
        group: Id,
    },
    /// A member with this id has already joined the group.
    #[error("member {member} has already joined {group}")]
    MemberAlreadyExist {
        /// The group.
        group: Id,
        /// The member.
        member: Id,
    },
    /// The member is not part of the group.
    #[error("member {member} has not joined {group}")]
    MemberNotJoined {
        /// The group.
        group: Id,
        /// The member.
        member: Id,
    },
    /// The group still has members.
    #[error("group {group} is not empty")]
    GroupNotEmpty {
        /// The group.
        group: Id,
    },
    /// `unwatch_*` was given a watch that is not registered.
    #[error("callback {watch} is not registered on group {group}")]
    WatchCallbackNotFound {
        /// The group.
        group: Id,
        /// The watch handle.
        watch: u64,
    },
    /// A stored value could not be encoded or decoded.
    #[error("serialization error: {0}")]
    Serialization(String),
    /// A hash ring operation named a node that is not on the ring.
    #[error("unknown node `{node}'")]
    UnknownNode {
        /// The node.
        node: String,
    },
    /// The coordinator must be started first.
    #[error("the coordinator is not started")]
    NotStarted,
    /// `start` was called on a started coordinator.
    #[error("the coordinator is already started")]
    AlreadyStarted,
    /// The lock, leadership or session this handle stood for is gone.
    #[error("{0} was lost")]
    Lost(String),
    /// Any other error reported by the backend.
    #[error("{driver} backend error: {message}")]
    Backend {
        /// Driver name.
        driver: &'static str,
        /// The backend's message (never containing secrets).
        message: String,
    },
}

impl Error {
    /// True for errors after which retrying the same call may succeed (connection trouble, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Connection(_) | Error::OperationTimedOut(_))
    }
}
