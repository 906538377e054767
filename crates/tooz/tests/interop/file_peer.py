"""A Python tooz peer for the file-driver interop tests (crates/tooz/tests/file_interop.rs).

Usage: python file_peer.py COMMAND URL ARGS...
  hold-lock URL NAME READY RELEASE   take lock NAME, create READY, wait for RELEASE, release
  try-lock URL NAME                  print "acquired" or "busy"
  join URL GROUP MEMBER              create GROUP if needed and join it with capabilities
                                     {"lang": "python"}; exit without leaving
  members URL GROUP                  print the hex of each member id, one per line
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


def main():
    command, url, *args = sys.argv[1:]
    if command == "hold-lock":
        name, ready, release = args
        coord = coordinator(url)
        lock = coord.get_lock(name.encode())
        assert lock.acquire(blocking=True)
        open(ready, "w").close()
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
    elif command == "join":
        group, member = args
        coord = coordinator(url, member.encode())
        try:
            coord.create_group(group.encode()).get()
        except coordination.GroupAlreadyExist:
            pass
        coord.join_group(group.encode(), {"lang": "python"}).get()
    elif command == "members":
        (group,) = args
        coord = coordinator(url)
        for member in sorted(coord.get_members(group.encode()).get()):
            if isinstance(member, str):
                member = member.encode()
            print(member.hex())
        coord.stop()
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
