"""A process using Python tooz's own driver and one using this package, on one server: they
exclude each other on a lock and see each other's groups (the key layouts are the same)."""

import subprocess
import sys
import textwrap
import uuid

import pytest
from tooz import coordination

# What a URL needs for the two drivers to share locks: PostgreSQL's lock keys are tooz-rs's
# own unless `lock_keys=python` asks for Python tooz's.
SHARED_LAYOUT = {"postgresql": "lock_keys=python"}

# The Python tooz side: takes orders on stdin, one per line, answers one line each.
PEER = textwrap.dedent("""
    import sys
    from tooz import coordination

    coord = coordination.get_coordinator(sys.argv[1], sys.argv[2].encode())
    coord.start()
    locks = {}

    def run(verb, arg):
        if verb == "acquire":
            return locks.setdefault(arg, coord.get_lock(arg)).acquire(blocking=False)
        if verb == "release":
            return locks[arg].release()
        if verb == "join":
            coord.join_group_create(arg)
            return True
        if verb == "members":
            return b",".join(sorted(coord.get_members(arg).get())).decode()
        raise ValueError(verb)

    for line in sys.stdin:
        verb, arg = line.split()
        try:
            answer = run(verb, arg.encode())
        except NotImplementedError:
            answer = "NotImplemented"
        print(answer, flush=True)
    coord.stop()
""")


def shared(url):
    extra = SHARED_LAYOUT.get(url.split(":", 1)[0])
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + extra


class Peer:
    def __init__(self, url, member):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PEER, url, member],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def ask(self, verb, arg):
        self.proc.stdin.write(f"{verb} {arg.decode()}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer == "NotImplemented":
            self.close()
            pytest.skip(f"Python tooz's driver does not implement {verb}")
        return answer

    def close(self):
        if self.proc.stdin.closed:
            return
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0


def test_locks_exclude_each_other(url, name):
    url = shared(url)
    peer = Peer(url, "python-tooz")
    ours = coordination.get_coordinator("rs+" + url, b"tooz-rs")
    ours.start()
    try:
        lock = ours.get_lock(name)
        assert peer.ask("acquire", name) == "True"
        assert lock.acquire(blocking=False) is False
        assert peer.ask("release", name) == "True"
        assert lock.acquire(blocking=5)
        assert peer.ask("acquire", name) == "False"
        assert lock.release()
        assert peer.ask("acquire", name) == "True"
        assert peer.ask("release", name) == "True"
    finally:
        ours.stop()
        peer.close()


def test_groups_are_shared(url, name):
    member = uuid.uuid4().hex
    peer = Peer(url, member)
    ours = coordination.get_coordinator("rs+" + url, b"tooz-rs")
    ours.start()
    try:
        assert peer.ask("join", name) == "True"
        assert ours.get_members(name).get() == {member.encode()}
        ours.join_group(name).get()
        assert peer.ask("members", name) == ",".join(sorted([member, "tooz-rs"]))
    finally:
        ours.stop()
        peer.close()
