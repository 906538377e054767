"""The tooz driver and lock classes over tooz-rs's Rust core.

``RustDriver`` is a ``tooz.coordination.CoordinationDriver``; ``RustLock`` is a
``tooz.locking.Lock``. What differs from Python tooz's own drivers:

- Calls run when made: the ``CoordAsyncResult`` they return is already done, and its
  ``get()`` returns the value or raises the error.
- Heartbeats follow tooz's contract: call ``heartbeat()`` often enough, or
  ``start(start_heart=True)`` for tooz's heart thread. Each beat also refreshes the locks
  held.
- Waits (a blocking ``acquire``, ``run_watchers(timeout)``) release the GIL and are woken
  by the backend's push where it has one; Ctrl-C interrupts them.
- ``run_watchers()`` with no timeout settles an election whose seat is free before it
  returns, as tooz's drivers do by trying the leader lock.
- Locks carry a fencing token and a lost signal: ``RustLock.fencing_token``,
  ``RustLock.lost_reason()``, ``RustLock.wait_lost(timeout)``.
- After ``os.fork()``, objects made in the parent raise ``tooz.ToozError`` in the child:
  a child makes and starts its own coordinator.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

import tooz
from tooz import coordination
from tooz import locking
from tooz import utils

from tooz_rs import _native
from tooz_rs.errors import translate, translated

_PREFIX = "rs+"


def _b(name: bytes | str) -> bytes:
    """Ids as bytes (tooz accepts str at run time; it is stored as UTF-8)."""
    return name.encode("utf-8") if isinstance(name, str) else name


def _caps_to_msgpack(capabilities: Any) -> bytes:
    return utils.dumps(capabilities)


def _caps_from_msgpack(blob: bytes) -> Any:
    return utils.loads(blob)


class _Done(coordination.CoordAsyncResult):
    """The result of a call that already ran: its value, or the error it raised."""

    def __init__(self, call, *args):
        try:
            with translated():
                self._value = call(*args)
            self._error = None
        except tooz.ToozError as error:
            self._value, self._error = None, error

    def get(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value

    def done(self) -> bool:
        return True


def native_url(parsed_url, options: dict[str, Any]) -> str:
    """The tooz-rs URL for a tooz URL of scheme ``rs+<scheme>``, with ``options``
    (tooz's merged query and keyword arguments) as its query."""
    scheme = parsed_url.scheme
    if not scheme.startswith(_PREFIX):
        raise tooz.ToozError(f"{scheme}: a tooz-rs scheme starts with {_PREFIX!r}")
    query = "&".join(
        f"{quote(key, safe='')}={quote(str(value), safe='')}"
        for key, values in sorted(options.items())
        for value in (values if isinstance(values, list) else [values])
    )
    url = f"{scheme[len(_PREFIX):]}://{parsed_url.netloc}{parsed_url.path}"
    return f"{url}?{query}" if query else url


class RustDriver(coordination.CoordinationDriver):
    """A tooz driver backed by tooz-rs; selected by ``rs+<scheme>://`` URLs."""

    def __init__(self, member_id, parsed_url, options) -> None:
        super().__init__(member_id, parsed_url, options)
        with translated():
            self._native = _native.Coordinator(
                native_url(parsed_url, options), _b(member_id)
            )
            names = self._native.characteristics()
        self.CHARACTERISTICS = tuple(
            coordination.Characteristics[name] for name in names
        )
        # (kind, group bytes) -> [(callback, native watch id)]
        self._watch_ids: dict[tuple[str, bytes], list[tuple[Any, int]]] = {}
        # group bytes -> the key its hooks are kept under (bytes or str, as given)
        self._hook_keys: dict[bytes, Any] = {}

    @property
    def native(self) -> _native.Coordinator:
        """The tooz-rs coordinator behind this driver."""
        return self._native

    def start(self, start_heart: bool = False) -> None:
        if self._started:
            raise tooz.ToozError("Can not start a driver which has not been stopped")
        with translated():
            self._native.start()
        if start_heart:
            self.heart.start()
        self._started = True
        self._joined_groups = set()

    def stop(self) -> None:
        if not self._started:
            raise tooz.ToozError("Can not stop a driver which has not been started")
        if self.heart.is_alive():
            self.heart.stop()
            self.heart.wait()
        self._watch_ids.clear()
        for hooks in (
            self._hooks_join_group,
            self._hooks_leave_group,
            self._hooks_elected_leader,
        ):
            hooks.clear()
        try:
            with translated():
                self._native.stop()
        finally:
            self._started = False

    def heartbeat(self) -> float:
        with translated():
            wait = self._native.heartbeat()
        # tooz's heart needs a number; a backend that needs no beat is looked at each second.
        return wait if wait is not None else 1.0

    # -- groups -------------------------------------------------------------------------

    def create_group(self, group_id):
        return _Done(self._native.create_group, _b(group_id))

    def delete_group(self, group_id):
        return _Done(self._native.delete_group, _b(group_id))

    def get_groups(self):
        return _Done(self._native.get_groups)

    def join_group(self, group_id, capabilities=None):
        caps = _caps_to_msgpack(capabilities)
        result = _Done(self._native.join_group, _b(group_id), caps)
        if result._error is None:
            self._joined_groups.add(group_id)
        return result

    def leave_group(self, group_id):
        result = _Done(self._native.leave_group, _b(group_id))
        self._joined_groups.discard(group_id)
        return result

    def get_members(self, group_id):
        return _Done(lambda g: set(self._native.get_members(g)), _b(group_id))

    def get_member_capabilities(self, group_id, member_id):
        def call(group, member):
            return _caps_from_msgpack(
                self._native.get_member_capabilities(group, member)
            )

        return _Done(call, _b(group_id), _b(member_id))

    def get_members_with_capabilities(self, group_id):
        def call(group):
            pairs = self._native.get_members_with_capabilities(group)
            return {member: _caps_from_msgpack(caps) for member, caps in pairs}

        return _Done(call, _b(group_id))

    def get_member_info(self, group_id, member_id):
        def call(group, member):
            caps, joined = self._native.get_member_info(group, member)
            created = (
                datetime.datetime.fromtimestamp(joined, datetime.timezone.utc)
                if joined is not None
                else None
            )
            return {"capabilities": _caps_from_msgpack(caps), "created_at": created}

        return _Done(call, _b(group_id), _b(member_id))

    def update_capabilities(self, group_id, capabilities):
        caps = _caps_to_msgpack(capabilities)
        return _Done(self._native.update_capabilities, _b(group_id), caps)

    # -- watchers -----------------------------------------------------------------------

    def _watch(self, kind: str, hooks, group_id, callback) -> None:
        group = _b(group_id)
        with translated():
            watch_id = self._native.watch(kind, group)
        self._watch_ids.setdefault((kind, group), []).append((callback, watch_id))
        self._hook_keys[group] = group_id
        hooks[group_id].append(callback)

    def _unwatch(self, kind: str, hooks, group_id, callback) -> None:
        group = _b(group_id)
        watches = self._watch_ids.get((kind, group), [])
        for index, (known, watch_id) in enumerate(watches):
            if known == callback:
                break
        else:
            raise coordination.WatchCallbackNotFound(group_id, callback)
        del watches[index]
        if not watches:
            del self._watch_ids[(kind, group)]
        hooks[group_id].remove(callback)
        if not hooks[group_id]:
            del hooks[group_id]
        with translated():
            self._native.unwatch(kind, group, watch_id)

    def watch_join_group(self, group_id, callback):
        self._watch("join", self._hooks_join_group, group_id, callback)

    def unwatch_join_group(self, group_id, callback):
        self._unwatch("join", self._hooks_join_group, group_id, callback)

    def watch_leave_group(self, group_id, callback):
        self._watch("leave", self._hooks_leave_group, group_id, callback)

    def unwatch_leave_group(self, group_id, callback):
        self._unwatch("leave", self._hooks_leave_group, group_id, callback)

    def watch_elected_as_leader(self, group_id, callback):
        self._watch("elected", self._hooks_elected_leader, group_id, callback)

    def unwatch_elected_as_leader(self, group_id, callback):
        self._unwatch("elected", self._hooks_elected_leader, group_id, callback)

    _EVENTS = {
        "join": ("_hooks_join_group", coordination.MemberJoinedGroup),
        "leave": ("_hooks_leave_group", coordination.MemberLeftGroup),
        "elected": ("_hooks_elected_leader", coordination.LeaderElected),
    }

    def run_watchers(self, timeout: float | None = None) -> list[Any]:
        with translated():
            events = self._native.run_watchers(timeout)
        results: list[Any] = []
        for kind, group, member in events:
            hooks_name, event_class = self._EVENTS[kind]
            key = self._hook_keys.get(group, group)
            hooks = getattr(self, hooks_name).get(key)
            if kind == "leave" and member == _b(self._member_id):
                self._joined_groups.discard(key)
            if hooks:
                results.extend(hooks.run(event_class(key, member)))
        return results

    # -- election -----------------------------------------------------------------------

    def get_leader(self, group_id):
        return _Done(self._native.get_leader, _b(group_id))

    def stand_down_group_leader(self, group_id) -> bool:
        with translated():
            return self._native.stand_down_group_leader(_b(group_id))

    # -- locks --------------------------------------------------------------------------

    def get_lock(self, name) -> RustLock:
        return RustLock(name, self._native)


class RustLock(locking.Lock):
    """A tooz lock backed by tooz-rs, with a fencing token and a lost signal."""

    def __init__(self, name, native_coordinator: _native.Coordinator) -> None:
        super().__init__(name)
        with translated():
            self._native = native_coordinator.lock(_b(name))

    def acquire(self, blocking=True, shared=False, timeout=None) -> bool:
        # tooz: blocking=False tries once; a number is a timeout; timeout= also bounds it.
        if blocking is False:
            wait = 0.0
        elif blocking is True:
            wait = timeout
        else:
            wait = float(blocking)
        with translated():
            return self._native.acquire(shared=shared, wait_seconds=wait)

    def release(self) -> bool:
        with translated():
            return self._native.release()

    def break_(self) -> bool:
        with translated():
            return self._native.break_lock()

    def is_still_owner(self) -> bool:
        with translated():
            return self._native.is_held()

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of the most recent acquisition held, if any: it grows with
        every acquisition of the lock, so a resource can refuse a stale holder."""
        return self._native.fencing_token()

    def lost_reason(self) -> str | None:
        """Why the most recent acquisition was lost, or None while it is held."""
        return self._native.lost_reason()

    def wait_lost(self, timeout: float) -> str | None:
        """Waits up to ``timeout`` seconds for the lock to be lost (GIL released); the
        reason if it was, else None."""
        with translated():
            return self._native.wait_lost(timeout)

    def holder(self) -> bytes | None:
        """The member holding the lock, where the backend records it."""
        with translated():
            return self._native.holder()


__all__ = ["RustDriver", "RustLock", "native_url", "translate"]
