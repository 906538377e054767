#!/usr/bin/env python3
"""Generate partitioner placement vectors with Python tooz.

Python tooz's Partitioner hashes an object as str(obj).encode('utf8') onto a HashRing whose
nodes are the group's members, weighted by their `weight` capability. This script builds that
ring for fixed members and weights and records the owner of str, int and bytes objects, so the
Rust partitioner can be checked against it (crates/tooz/tests/partitioner_golden.rs).

Usage: /path/to/venv-with-tooz/bin/python scripts/gen-partitioner-vectors.py > \
    crates/tooz/tests/data/partitioner-golden.txt
"""
from importlib.metadata import version

from tooz import hashring

MEMBERS = {b"member-a": 1, b"member-b": 5, b"member-c": 2}
COUNT = 300


def objects():
    for i in range(COUNT):
        yield "str", f"object-{i}", f"object-{i}"
        yield "int", str(i * 7919), i * 7919
        raw = f"obj-{i}".encode() + bytes([i % 256])
        yield "bytes", raw.hex(), raw


def main():
    ring = hashring.HashRing([])
    for member, weight in MEMBERS.items():
        ring.add_node(member, weight)
    print(f"# tooz {version('tooz')}; members "
          + " ".join(f"{m.decode()}={w}" for m, w in MEMBERS.items()))
    for kind, shown, obj in objects():
        owners = ring.get_nodes(str(obj).encode("utf8"), replicas=2)
        first = ring.get_nodes(str(obj).encode("utf8"))
        print(kind, shown, next(iter(first)).decode(),
              ",".join(sorted(o.decode() for o in owners)))


if __name__ == "__main__":
    main()
