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
import time

import peer


def join(url, group, member):
    caps = {"lang": "python", "blob": b"\x00\x01"}
    peer.join_created(peer.coordinator(url, member.encode()), group, caps)
    # No stop(): the membership stays until the beat key expires.


def members(url, group):
    coord = peer.coordinator(url)
    for member in sorted(coord.get_members(group.encode()).get()):
        caps = coord.get_member_capabilities(group.encode(), member).get()
        print(member.hex(), repr(caps))
    coord.stop()


def lead(url, group, ready, release):
    coord = peer.coordinator(url)
    peer.until_elected(coord, group)
    peer.touch(ready)
    peer.wait_for(release)
    coord.stop()


def try_lead(url, group):
    coord = peer.coordinator(url)
    elected = []
    coord.watch_elected_as_leader(group.encode(), elected.append)
    for _ in range(5):
        coord.run_watchers()
        time.sleep(0.05)
    print("leader" if elected else "not-leader")
    coord.stop()


if __name__ == "__main__":
    peer.run(
        {
            "hold-lock": peer.hold_lock,
            "try-lock": peer.try_lock,
            "join": join,
            "members": members,
            "lead": lead,
            "try-lead": try_lead,
        }
    )
