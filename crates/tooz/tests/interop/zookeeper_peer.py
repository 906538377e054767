"""A Python tooz (kazoo) peer for the ZooKeeper interop tests (crates/tooz/tests/zookeeper_interop.rs).

Usage: python zookeeper_peer.py COMMAND URL ARGS...
  hold-lock URL NAME READY RELEASE   as member "python-peer": take lock NAME, create file READY,
                                     wait for file RELEASE, release
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
import peer


def hold_lock(url, name, ready, release):
    peer.hold_lock(url, name, ready, release, member=b"python-peer")


def wait_lock(url, name):
    coord = peer.coordinator(url)
    lock = coord.get_lock(name.encode())
    assert lock.acquire(blocking=True)
    print("acquired", flush=True)
    lock.release()
    coord.stop()


def join(url, group, member, ready, done):
    coord = peer.coordinator(url, member.encode())
    peer.join_created(coord, group, {"lang": "python", "n": 1, "raw": b"\x00\xff"})
    peer.touch(ready)
    peer.wait_for(done)
    coord.leave_group(group.encode()).get()
    coord.stop()


def members(url, group):
    coord = peer.coordinator(url)
    found = coord.get_members_with_capabilities(group.encode()).get()
    for member, caps in sorted(found.items()):
        if isinstance(member, str):
            member = member.encode()
        print(member.hex(), repr(caps))
    coord.stop()


def lead(url, group, ready, release):
    coord = peer.coordinator(url, b"python-leader")
    peer.until_elected(coord, group)
    peer.touch(ready)
    peer.wait_for(release)
    coord.stand_down_group_leader(group.encode())
    coord.stop()


def try_lead(url, group):
    coord = peer.coordinator(url, b"python-candidate")
    elected = []
    coord.watch_elected_as_leader(group.encode(), elected.append)
    coord.run_watchers()
    print("elected" if elected else "not-elected")
    coord.stop()


def leader(url, group):
    coord = peer.coordinator(url)
    found = coord.get_leader(group.encode()).get()
    print(found.hex() if found else "none")
    coord.stop()


if __name__ == "__main__":
    peer.run(
        {
            "hold-lock": hold_lock,
            "try-lock": peer.try_lock,
            "wait-lock": wait_lock,
            "join": join,
            "members": members,
            "lead": lead,
            "try-lead": try_lead,
            "leader": leader,
        }
    )
