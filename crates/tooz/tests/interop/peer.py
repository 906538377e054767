"""The Python tooz peer of the interop suite (crates/tooz/tests/interop/main.rs), for any URL.

Usage: python peer.py COMMAND URL ARGS...

  probe                 try each API part once; print "version V", then "PART ok",
                        "PART NotImplemented: ..." or "PART error: ..." per part
  hold-lock NAME MEMBER take lock NAME as MEMBER, print "ready", wait for a line, release
  try-lock NAME         print "acquired" (and release) or "busy"
  wait-lock NAME        print "waiting", block until lock NAME is taken, print "acquired"
  create-group GROUP    create GROUP, print "groups" and the hex ids of all groups, wait
                        for a line
  groups                print "groups" and the hex ids of all groups
  join GROUP MEMBER     join GROUP (created if needed) as MEMBER with capabilities CAPS,
                        print "ready", wait for a line: "vanish" exits without leaving (the
                        membership is left to expire), anything else leaves
  members GROUP         print "<hex member id> <repr of its capabilities>" per member
  lead GROUP MEMBER     run for leader of GROUP as MEMBER until elected, print "ready",
                        wait for a line, stop (which gives leadership up)
  try-lead GROUP        run for leader a few rounds: print "elected" or "not-elected"
  leader GROUP          print the hex id of GROUP's leader, or "none"

Names are taken as UTF-8. Each command starts a coordinator (member "python-<pid>" unless
given) and stops it at the end; the whole process is bounded by an alarm.
"""
import importlib.metadata
import os
import signal
import sys
import time
import uuid

import tooz
from tooz import coordination

DEADLINE = 60  # seconds a peer may live
CAPS = {"lang": "python", "raw": b"\x00\xff", "n": 1}


def say(*words):
    print(*words, flush=True)


def one_endpoint(url):
    """Python tooz's etcd drivers take one endpoint: the first of a list (same cluster)."""
    scheme, rest = url.split("://", 1)
    if not scheme.startswith("etcd"):
        return url
    authority, sep, tail = rest.partition("?")
    return "%s://%s%s%s" % (scheme, authority.split(",")[0], sep, tail)


def started(url, member=None):
    member = member.encode() if member else b"python-%d" % os.getpid()
    coord = coordination.get_coordinator(one_endpoint(url), member)
    coord.start(start_heart=True)
    return coord


def hexid(id_):
    return (id_.encode() if isinstance(id_, str) else id_).hex()


def campaign(coord, group, rounds):
    """Runs for leader of `group` for `rounds` rounds (forever if None): elected?"""
    elected = []
    coord.watch_elected_as_leader(group, elected.append)
    while not elected and rounds != 0:
        coord.run_watchers()
        rounds = None if rounds is None else rounds - 1
        if not elected:
            time.sleep(0.05)
    return bool(elected)


def probe(url):
    member = "python-probe-%d" % os.getpid()
    coord = started(url, member)
    name = ("probe-" + uuid.uuid4().hex).encode()
    lock = coord.get_lock(name)

    def members():
        coord.join_group(name, CAPS).get()
        coord.get_members(name).get()
        coord.get_member_capabilities(name, member.encode()).get()
        coord.leave_group(name).get()

    parts = {
        "lock": lambda: lock.acquire() and lock.release(),
        "try-lock": lambda: lock.acquire(blocking=False) and lock.release(),
        "groups": lambda: coord.create_group(name).get() or coord.get_groups().get(),
        "members": members,
        "lead": lambda: campaign(coord, name, 1),
        "leader": lambda: coord.get_leader(name).get(),
    }
    say("version", importlib.metadata.version("tooz"))
    for part, call in parts.items():
        try:
            call()
            say(part, "ok")
        except tooz.NotImplemented as e:
            say(part, f"NotImplemented: {e}".rstrip(": "))
        except Exception as e:
            say(part, "error:", repr(e))
    try:
        coord.delete_group(name).get()
    except Exception:
        pass
    coord.stop()


def hold_lock(url, name, member):
    coord = started(url, member)
    lock = coord.get_lock(name.encode())
    assert lock.acquire()
    say("ready")
    sys.stdin.readline()
    assert lock.release()
    coord.stop()


def try_lock(url, name):
    coord = started(url)
    lock = coord.get_lock(name.encode())
    if lock.acquire(blocking=False):
        say("acquired")
        lock.release()
    else:
        say("busy")
    coord.stop()


def wait_lock(url, name):
    coord = started(url)
    lock = coord.get_lock(name.encode())
    say("waiting")
    assert lock.acquire()
    say("acquired")
    lock.release()
    coord.stop()


def groups(url, create=None):
    coord = started(url)
    if create:
        coord.create_group(create.encode()).get()
    say("groups", *sorted(hexid(g) for g in coord.get_groups().get()))
    if create:
        sys.stdin.readline()
    coord.stop()


def join(url, group, member):
    coord = started(url, member)
    coord.join_group_create(group.encode(), CAPS)
    say("ready")
    if sys.stdin.readline().strip() == "vanish":
        os._exit(0)
    coord.stop()


def members(url, group):
    coord = started(url)
    for member in sorted(coord.get_members(group.encode()).get()):
        caps = coord.get_member_capabilities(group.encode(), member).get()
        say(hexid(member), repr(caps))
    coord.stop()


def lead(url, group, member):
    coord = started(url, member)
    campaign(coord, group.encode(), None)
    say("ready")
    sys.stdin.readline()
    coord.stop()


def try_lead(url, group):
    coord = started(url)
    say("elected" if campaign(coord, group.encode(), 5) else "not-elected")
    coord.stop()


def leader(url, group):
    coord = started(url)
    found = coord.get_leader(group.encode()).get()
    say(hexid(found) if found else "none")
    coord.stop()


COMMANDS = {
    "probe": probe,
    "hold-lock": hold_lock,
    "try-lock": try_lock,
    "wait-lock": wait_lock,
    "create-group": groups,
    "groups": groups,
    "join": join,
    "members": members,
    "lead": lead,
    "try-lead": try_lead,
    "leader": leader,
}

if __name__ == "__main__":
    signal.alarm(DEADLINE)
    command, url, *args = sys.argv[1:]
    COMMANDS[command](url, *args)
