"""A Python tooz (kazoo) peer for the ZooKeeper interop tests (crates/tooz/tests/zookeeper_interop.rs).

Usage: python zookeeper_peer.py COMMAND URL ARGS...
  hold-lock URL NAME READY RELEASE   take lock NAME, create file READY, wait for file RELEASE, release
  try-lock URL NAME                  print "acquired" or "busy"
  wait-lock URL NAME                 block until lock NAME is acquired, print "acquired", release
  join URL GROUP MEMBER READY DONE   create GROUP if needed, join it as MEMBER with capabilities
                                     {"lang": "python", "n": 1, "raw": b"\\x00\\xff"}, create READY,
                                     wait for DONE, leave
  members URL GROUP                  print "<hex of member id> <repr of its capabilities>" per member
  lead URL GROUP READY RELEASE       become leader of GROUP (run_watchers until elected), create
                                     READY, wait for RELEASE, stand down
  try-lead URL GROUP                 one election round: print "elected" or "not-elected"
  leader URL GROUP                   print the leader's id (hex) or "none"
"""
import os
import sys
import time

from tooz import coordination

DEADLINE = 30  # seconds any wait may take


def coordinator(url, member=b"python-peer"):
    coord = coordination.get_coordinator(url, member)
    coord.start()
    return coord


def wait_for(path):
    end = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > end:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.01)


def touch(path):
    open(path, "w").close()


def main():
    command, url, *args = sys.argv[1:]
    if command == "hold-lock":
        name, ready, release = args
        coord = coordinator(url)
        lock = coord.get_lock(name.encode())
        assert lock.acquire(blocking=True)
        touch(ready)
        wait_for(release)
        lock.release()
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
    elif command == "wait-lock":
        (name,) = args
        coord = coordinator(url)
        lock = coord.get_lock(name.encode())
        assert lock.acquire(blocking=True)
        print("acquired", flush=True)
        lock.release()
        coord.stop()
    elif command == "join":
        group, member, ready, done = args
        coord = coordinator(url, member.encode())
        try:
            coord.create_group(group.encode()).get()
        except coordination.GroupAlreadyExist:
            pass
        caps = {"lang": "python", "n": 1, "raw": b"\x00\xff"}
        coord.join_group(group.encode(), caps).get()
        touch(ready)
        wait_for(done)
        coord.leave_group(group.encode()).get()
        coord.stop()
    elif command == "members":
        (group,) = args
        coord = coordinator(url)
        for member, caps in sorted(
            coord.get_members_with_capabilities(group.encode()).get().items()
        ):
            if isinstance(member, str):
                member = member.encode()
            print(member.hex(), repr(caps))
        coord.stop()
    elif command == "lead":
        group, ready, release = args
        coord = coordinator(url, b"python-leader")
        elected = []
        coord.watch_elected_as_leader(group.encode(), lambda event: elected.append(event))
        end = time.monotonic() + DEADLINE
        while not elected:
            if time.monotonic() > end:
                sys.exit("never elected")
            coord.run_watchers()
            time.sleep(0.01)
        touch(ready)
        wait_for(release)
        coord.stand_down_group_leader(group.encode())
        coord.stop()
    elif command == "try-lead":
        (group,) = args
        coord = coordinator(url, b"python-candidate")
        elected = []
        coord.watch_elected_as_leader(group.encode(), lambda event: elected.append(event))
        coord.run_watchers()
        print("elected" if elected else "not-elected")
        coord.stop()
    elif command == "leader":
        (group,) = args
        coord = coordinator(url)
        leader = coord.get_leader(group.encode()).get()
        print(leader.hex() if leader else "none")
        coord.stop()
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
