"""A Python tooz peer for the redis-driver interop tests (crates/tooz/tests/redis_interop.rs).

Usage: python redis_peer.py COMMAND URL ARGS...
  hold-lock URL NAME READY RELEASE   take lock NAME, create READY, wait for RELEASE, release
  try-lock URL NAME                  print "acquired" or "busy"
  join URL GROUP MEMBER              create GROUP if needed and join it as MEMBER with
                                     capabilities {"lang": "python", "blob": b"\\x00\\x01"};
                                     exit without leaving (the beat key expires on its own)
  members URL GROUP                  print "<hex of member id> <repr of capabilities>" per member
  lead URL GROUP READY RELEASE       run for leader of GROUP until elected, create READY,
                                     wait for RELEASE, stop (which gives leadership up)
  try-lead URL GROUP                 run for leader a few times: print "leader" or "not-leader"
Every wait is bounded (30 s).
"""
import os
import sys
import time

from tooz import coordination

DEADLINE = 30  # seconds any wait may take


def coordinator(url, member=None):
    member = member or b"python-peer-%d" % os.getpid()
    coord = coordination.get_coordinator(url, member)
    coord.start()
    return coord


def wait_for(path):
    end = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > end:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.01)


def main():
    command, url, *args = sys.argv[1:]
    if command == "hold-lock":
        name, ready, release = args
        coord = coordinator(url)
        lock = coord.get_lock(name.encode())
        assert lock.acquire(blocking=True)
        open(ready, "w").close()
        wait_for(release)
        assert lock.release()
        coord.stop()
    elif command == "try-lock":
        (name,) = args
        coord = coordinator(url)
        lock = coord.get_lock(name.encode())
        if lock.acquire(blocking=False):
            print("acquired")
            lock.release()
        else:
            print("busy")
        coord.stop()
    elif command == "join":
        group, member = args
        coord = coordinator(url, member.encode())
        try:
            coord.create_group(group.encode()).get()
        except coordination.GroupAlreadyExist:
            pass
        caps = {"lang": "python", "blob": b"\x00\x01"}
        coord.join_group(group.encode(), caps).get()
        # No stop(): the membership stays until the beat key expires.
    elif command == "members":
        (group,) = args
        coord = coordinator(url)
        members = coord.get_members(group.encode()).get()
        for member in sorted(members):
            caps = coord.get_member_capabilities(group.encode(), member).get()
            print(member.hex(), repr(caps))
        coord.stop()
    elif command == "lead":
        group, ready, release = args
        coord = coordinator(url)
        elected = []
        coord.watch_elected_as_leader(group.encode(), elected.append)
        end = time.monotonic() + DEADLINE
        while not elected:
            if time.monotonic() > end:
                sys.exit("never elected")
            coord.run_watchers()
            time.sleep(0.05)
        open(ready, "w").close()
        wait_for(release)
        coord.stop()
    elif command == "try-lead":
        (group,) = args
        coord = coordinator(url)
        elected = []
        coord.watch_elected_as_leader(group.encode(), elected.append)
        for _ in range(5):
            coord.run_watchers()
            time.sleep(0.05)
        print("leader" if elected else "not-leader")
        coord.stop()
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
