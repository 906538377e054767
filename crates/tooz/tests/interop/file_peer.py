"""A Python tooz peer for the file-driver interop tests (crates/tooz/tests/file_interop.rs).

Usage: python file_peer.py COMMAND URL ARGS...
  hold-lock URL NAME READY RELEASE   take lock NAME, create READY, wait for RELEASE, release
  try-lock URL NAME                  print "acquired" or "busy"
  join URL GROUP MEMBER              create GROUP if needed and join it with capabilities
                                     {"lang": "python"}; exit without leaving
  members URL GROUP                  print the hex of each member id, one per line
"""
import peer


def join(url, group, member):
    peer.join_created(peer.coordinator(url, member.encode()), group, {"lang": "python"})


def members(url, group):
    coord = peer.coordinator(url)
    for member in sorted(coord.get_members(group.encode()).get()):
        if isinstance(member, str):
            member = member.encode()
        print(member.hex())
    coord.stop()


if __name__ == "__main__":
    peer.run(
        {
            "hold-lock": peer.hold_lock,
            "try-lock": peer.try_lock,
            "join": join,
            "members": members,
        }
    )
