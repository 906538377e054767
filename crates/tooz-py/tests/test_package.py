"""The package's additions and guarantees beyond Python tooz's own suite: fencing tokens,
the lost signal, errors, the GIL, callbacks' thread, fork safety and panics."""

import os
import sys
import threading
import uuid

import pytest
import tooz
from tooz import coordination

import tooz_rs
from tooz_rs import _native


def coordinator(url, member=None):
    coord = coordination.get_coordinator("rs+" + url, member or uuid.uuid4().hex.encode())
    coord.start()
    return coord


def test_every_driver_has_an_entry_point():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="tooz.backends")}
    assert {"rs+" + scheme for scheme in tooz_rs.DRIVERS} <= names


def test_fencing_tokens_grow_and_name_the_holding_acquisition(url, name):
    coord = coordinator(url)
    try:
        lock = coord.get_lock(name)
        assert lock.fencing_token is None
        assert lock.acquire()
        first = lock.fencing_token
        assert lock.release()
        assert lock.fencing_token is None
        assert lock.acquire()
        assert lock.fencing_token > first
        assert lock.release()
    finally:
        coord.stop()


def test_a_broken_lock_reports_lost(url, name):
    holder, breaker = coordinator(url), coordinator(url)
    try:
        lock = holder.get_lock(name)
        assert lock.acquire()
        assert lock.lost_reason() is None
        assert lock.wait_lost(0.05) is None
        try:
            assert breaker.get_lock(name).break_()
        except tooz.NotImplemented as why:
            pytest.skip(str(why))
        # Backends that push the break report it at once; the others at a refresh, which
        # this coordinator makes in its heartbeat (that may fail: the break may have ended
        # its session).
        reason = None
        for _ in range(25):
            reason = lock.wait_lost(0.2)
            if reason is not None:
                break
            try:
                holder.heartbeat()
            except tooz.ToozError:
                pass
        assert reason in ("the lock was broken", "the session was lost") or "expired" in reason
        assert lock.lost_reason() == reason
        assert not lock.is_still_owner()
        assert lock.release() is False
    finally:
        holder.stop()
        breaker.stop()


def test_errors_are_tooz_exceptions_without_secrets():
    with pytest.raises(tooz.ToozError) as raised:
        coordination.get_coordinator("rs+redis://:s3cr%2Bt@127.0.0.1:1/?bogus=1", b"m")
    assert "bogus" in str(raised.value)
    assert "s3cr" not in str(raised.value) and "s3cr" not in repr(raised.value.__cause__)
    coord = coordination.get_coordinator("rs+redis://:s3cret@127.0.0.1:1", b"m")
    with pytest.raises(coordination.ToozConnectionError) as raised:
        coord.start()
    assert "s3cret" not in str(raised.value)


def test_a_panic_becomes_an_exception():
    with pytest.raises(_native.NativeError, match="deliberate panic"):
        _native.check_panic_boundary()


def test_a_blocked_acquire_releases_the_gil(url, name):
    holder, waiter = coordinator(url), coordinator(url)
    try:
        held = holder.get_lock(name)
        assert held.acquire()
        got = []
        thread = threading.Thread(target=lambda: got.append(waiter.get_lock(name).acquire()))
        thread.start()
        # This thread runs Python code while the other waits in Rust: it could not if the
        # wait held the GIL.
        thread.join(0.3)
        assert thread.is_alive() and got == []
        assert held.release()
        thread.join(10)
        assert got == [True]
    finally:
        holder.stop()
        waiter.stop()


def test_callbacks_run_on_the_thread_that_runs_the_watchers(url, name):
    coord, other = coordinator(url), coordinator(url)
    try:
        coord.create_group(name).get()
        threads = []
        coord.watch_join_group(name, lambda event: threads.append(threading.get_ident()))
        other.join_group(name).get()
        for _ in range(100):
            if coord.run_watchers(timeout=0.1):
                break
        assert threads == [threading.get_ident()]
    finally:
        coord.stop()
        other.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_cannot_use_its_parents_coordinator(url, name):
    parent = coordinator(url)
    try:
        lock = parent.get_lock(name)
        assert lock.acquire()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            status = 0
            try:
                try:
                    lock.release()
                    status |= 1  # the parent's lock object worked here
                except tooz.ToozError as error:
                    if "fork" not in str(error):
                        status |= 2
                try:
                    parent.get_groups().get()
                    status |= 4
                except tooz.ToozError:
                    pass
                # A ZooKeeper session made in the parent leaves its client library unable
                # to connect in the child (docs/python.md): only the refusal is checked.
                if not url.startswith("zookeeper"):
                    child = coordinator(url)
                    if child.get_lock(name).acquire(blocking=False):
                        status |= 8  # the parent's lock must still exclude the child
                    child.stop()
            except BaseException as error:  # pragma: no cover - reported below
                print(f"child failed: {error!r}", file=sys.stderr, flush=True)
                status |= 16
            os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert lock.is_still_owner()
        assert lock.release()
    finally:
        parent.stop()


def test_ctrl_c_interrupts_a_blocked_acquire_and_cancels_it(url, name):
    import _thread

    holder, waiter, third = coordinator(url), coordinator(url), coordinator(url)
    try:
        held = holder.get_lock(name)
        assert held.acquire()
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            waiter.get_lock(name).acquire()
        timer.join()
        assert held.release()
        # The interrupted wait was dropped: it does not take the lock later.
        later = third.get_lock(name)
        assert later.acquire(blocking=5)
        assert later.release()
    finally:
        holder.stop()
        waiter.stop()
        third.stop()
