#!/usr/bin/env python3
"""Python tooz's redis driver, measured on the same machine and server as the Rust bench.

Usage: python bench-redis-python.py URL
Prints `name value` lines: lock acquire+release per second and join+leave per second, each
measured for about 3 seconds.
"""
import os
import sys
import time

from tooz import coordination


def rate(fn, seconds=3.0):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def main():
    url = sys.argv[1]
    coord = coordination.get_coordinator(url, b"python-bench-%d" % os.getpid())
    coord.start()
    lock = coord.get_lock(b"python-bench-lock-%d" % os.getpid())

    def acquire_release():
        lock.acquire()
        lock.release()

    print("python_lock_acquire_release_per_s %.0f" % rate(acquire_release))
    group = b"python-bench-group-%d" % os.getpid()
    coord.create_group(group).get()

    def join_leave():
        coord.join_group(group).get()
        coord.leave_group(group).get()

    print("python_join_leave_per_s %.0f" % rate(join_leave))
    coord.delete_group(group).get()
    coord.stop()


if __name__ == "__main__":
    main()
