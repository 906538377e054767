#!/usr/bin/env python3
"""Python tooz's file driver, measured on the same machine and directory as the Rust bench.

Usage: python bench-file-python.py DIR GROUP
Prints `name value` lines: lock acquire+release per second, join+leave per second, and the
milliseconds of one get_members on GROUP (which the caller filled with members).
"""
import sys
import time

from tooz import coordination


def rate(fn, seconds=2.0):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def main():
    directory, group = sys.argv[1:3]
    url = "file://" + directory
    coord = coordination.get_coordinator(url, b"python-bench")
    coord.start()
    lock = coord.get_lock(b"python-bench-lock")

    def acquire_release():
        lock.acquire()
        lock.release()

    print("python_lock_acquire_release_per_s %.0f" % rate(acquire_release))
    try:
        coord.create_group(b"python-bench-group").get()
    except coordination.GroupAlreadyExist:
        pass

    def join_leave():
        coord.join_group(b"python-bench-group").get()
        coord.leave_group(b"python-bench-group").get()

    print("python_join_leave_per_s %.0f" % rate(join_leave))
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        members = coord.get_members(group.encode()).get()
        samples.append(time.perf_counter() - start)
    samples.sort()
    print("python_get_members_1000_ms %.2f" % (samples[len(samples) // 2] * 1000))
    print("python_get_members_count %d" % len(members))
    coord.stop()


if __name__ == "__main__":
    main()
