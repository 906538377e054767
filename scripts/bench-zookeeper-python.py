#!/usr/bin/env python3
"""Python tooz's zookeeper (kazoo) driver, measured on the same server as the Rust bench.

Usage: python bench-zookeeper-python.py URL
Prints `name value` lines: lock acquire+release per second (one process, one lock,
`acquire(blocking=True)` + `release()` in a loop, as in the Python baseline) and the
raw kazoo create/get_children/delete round trips per second on the same client.
"""
import sys
import time
import uuid

from tooz import coordination


def rate(fn, seconds=3.0):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def main():
    (url,) = sys.argv[1:2]
    coord = coordination.get_coordinator(url, b"python-bench")
    coord.start()
    lock = coord.get_lock(("python-bench-" + uuid.uuid4().hex).encode())

    def acquire_release():
        lock.acquire()
        lock.release()

    print("python_lock_acquire_release_per_s %.0f" % rate(acquire_release))
    client = coord._coord
    path = "/tooz/locks/python-floor-" + uuid.uuid4().hex
    client.ensure_path(path)

    def floor():
        node = client.create(path + "/n__lock__", b"x", ephemeral=True, sequence=True)
        client.get_children(path)
        client.delete(node)

    print("python_kazoo_floor_per_s %.0f" % rate(floor))
    coord.stop()


if __name__ == "__main__":
    main()
