#!/usr/bin/env python3
"""Measure Python tooz's HashRing on the same ring and keys as benches/hashring.rs.

Usage:

    python3 -m venv /tmp/tooz-venv
    /tmp/tooz-venv/bin/pip install tooz==9.1.0
    /tmp/tooz-venv/bin/python scripts/bench-hashring-python.py

or let the Rust bench run it and print both figures side by side:

    HASHRING_BENCH_PYTHON=/tmp/tooz-venv/bin/python cargo bench --bench hashring

Ring: 100 nodes b"node-0".."node-99", weight 1, 32 partitions, md5; keys b"key-0".."key-99999";
get_nodes(key) with one replica. Build: 1000 nodes "node-i" with weight 1 + i % 4 added one by one.
Prints one "name value" pair per line.
"""

import time

from tooz.hashring import HashRing

NODES = 100
KEYS = 100_000
ROUNDS = 5


def lookups_per_second():
    ring = HashRing([b"node-%d" % i for i in range(NODES)])
    keys = [b"key-%d" % i for i in range(KEYS)]
    get_nodes = ring.get_nodes
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for key in keys:
            get_nodes(key)
        best = max(best, KEYS / (time.perf_counter() - start))
    return best


def build_ms():
    times = []
    for _ in range(3):
        start = time.perf_counter()
        ring = HashRing([])
        for i in range(1000):
            ring.add_node("node-%d" % i, 1 + i % 4)
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main():
    print("python_get_nodes_lookups_per_s %.0f" % lookups_per_second())
    print("python_build_1000_weighted_ms %.1f" % build_ms())


if __name__ == "__main__":
    main()
