"""What the Python tooz peers of the interop tests share: a started coordinator, bounded
waits for marker files, the lock commands, and the command-line dispatch.

Every peer is run as `python <driver>_peer.py COMMAND URL ARGS...`; Python puts the
script's directory first on its module path, so the peers import this module as `peer`.
"""
import os
import sys
import time

from tooz import coordination

DEADLINE = 30  # seconds any wait may take


def coordinator(url, member=None):
    """A started coordinator; `member` defaults to one unique to this process."""
    member = member or b"python-peer-%d" % os.getpid()
    coord = coordination.get_coordinator(url, member)
    coord.start()
    return coord


def wait_for(path):
    """Waits (bounded) until file `path` exists."""
    end = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > end:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.01)


def touch(path):
    open(path, "w").close()


def hold_lock(url, name, ready, release, member=None):
    """hold-lock URL NAME READY RELEASE: take lock NAME, create READY, wait for RELEASE,
    release."""
    coord = coordinator(url, member)
    lock = coord.get_lock(name.encode())
    assert lock.acquire(blocking=True)
    touch(ready)
    wait_for(release)
    assert lock.release()
    coord.stop()


def try_lock(url, name):
    """try-lock URL NAME: print "acquired" or "busy"."""
    coord = coordinator(url)
    lock = coord.get_lock(name.encode())
    if lock.acquire(blocking=False):
        print("acquired")
        lock.release()
    else:
        print("busy")
    coord.stop()


def join_created(coord, group, caps):
    """Creates `group` if needed and joins it with `caps`."""
    try:
        coord.create_group(group.encode()).get()
    except coordination.GroupAlreadyExist:
        pass
    coord.join_group(group.encode(), caps).get()


def until_elected(coord, group):
    """Runs for leader of `group` until elected (bounded)."""
    elected = []
    coord.watch_elected_as_leader(group.encode(), elected.append)
    end = time.monotonic() + DEADLINE
    while not elected:
        if time.monotonic() > end:
            sys.exit("never elected")
        coord.run_watchers()
        time.sleep(0.01)


def run(commands):
    """Runs the command named on the command line: `commands[COMMAND](URL, ARGS...)`."""
    command, url, *args = sys.argv[1:]
    if command not in commands:
        sys.exit("unknown command " + command)
    commands[command](url, *args)
