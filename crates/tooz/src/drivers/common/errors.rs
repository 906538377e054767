//! tooz's typed errors for groups and members, and the mapping of I/O errors.

use std::io;

use crate::error::Error;
use crate::id::Id;

/// `group` does not exist.
pub(crate) fn group_not_created(group: &Id) -> Error {
    Error::GroupNotCreated {
        group: group.clone(),
    }
}

/// `group` exists already.
pub(crate) fn group_already_exist(group: &Id) -> Error {
    Error::GroupAlreadyExist {
        group: group.clone(),
    }
}

/// `group` still has members.
pub(crate) fn group_not_empty(group: &Id) -> Error {
    Error::GroupNotEmpty {
        group: group.clone(),
    }
}

/// `member` is not in `group`.
pub(crate) fn member_not_joined(group: &Id, member: &Id) -> Error {
    Error::MemberNotJoined {
        group: group.clone(),
        member: member.clone(),
    }
}

/// `member` is in `group` already.
pub(crate) fn member_already_exist(group: &Id, member: &Id) -> Error {
    Error::MemberAlreadyExist {
        group: group.clone(),
        member: member.clone(),
    }
}

/// An I/O failure of `driver` while doing `what`.
pub(crate) fn io_backend(driver: &'static str, what: &str, error: io::Error) -> Error {
    Error::Backend {
        driver,
        message: format!("{what}: {error}"),
    }
}

/// True when `error` says the file or object does not exist.
pub(crate) fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}
