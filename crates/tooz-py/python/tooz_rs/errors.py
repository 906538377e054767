"""tooz-rs errors as Python tooz's exception classes."""

import contextlib

import tooz
from tooz import coordination

from tooz_rs._native import NativeError


def _group_error(cls):
    return lambda message, group, member: cls(group)


def _member_error(cls):
    return lambda message, group, member: cls(group, member)


def _plain(cls):
    return lambda message, group, member: cls(message)


_BY_KIND = {
    "NotImplemented": _plain(tooz.NotImplemented),
    "Connection": _plain(coordination.ToozConnectionError),
    "OperationTimedOut": _plain(coordination.OperationTimedOut),
    "LockAcquireFailed": _plain(coordination.LockAcquireFailed),
    "DriverChosenPoorly": _plain(coordination.ToozDriverChosenPoorly),
    "GroupNotCreated": _group_error(coordination.GroupNotCreated),
    "GroupAlreadyExist": _group_error(coordination.GroupAlreadyExist),
    "GroupNotEmpty": _group_error(coordination.GroupNotEmpty),
    "MemberAlreadyExist": _member_error(coordination.MemberAlreadyExist),
    "MemberNotJoined": _member_error(coordination.MemberNotJoined),
}


def translate(error: NativeError) -> tooz.ToozError:
    """The tooz exception for a tooz-rs error (``tooz.ToozError`` when none fits)."""
    kind, message, group, member = error.args
    make = _BY_KIND.get(kind, _plain(tooz.ToozError))
    return make(message, group, member)


@contextlib.contextmanager
def translated():
    """Raises tooz's exception for any tooz-rs error raised inside the block."""
    try:
        yield
    except NativeError as error:
        raise translate(error) from error
