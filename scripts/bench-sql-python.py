#!/usr/bin/env python3
"""Python tooz's pgsql or mysql lock, measured on the same machine and server as tooz-rs.

Usage: python bench-sql-python.py URL
Prints `name value` lines: uncontended lock acquire+release per second (about 3 seconds),
and the hand-off latency to a blocked waiter in another thread (p50, p99, 50 rounds).
Python tooz has no groups on these backends.
"""
import os
import sys
import threading
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
        assert lock.acquire(blocking=False)
        lock.release()

    print("python_lock_acquire_release_per_s %.0f" % rate(acquire_release))

    other = coordination.get_coordinator(url, b"python-bench-waiter-%d" % os.getpid())
    other.start()
    name = b"python-bench-handoff-%d" % os.getpid()
    samples = []
    for _ in range(50):
        held = coord.get_lock(name)
        assert held.acquire(blocking=False)
        got = []

        def wait():
            waiter = other.get_lock(name)
            waiter.acquire(blocking=True)
            got.append(time.perf_counter())
            waiter.release()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.02)
        released = time.perf_counter()
        held.release()
        thread.join(10)
        if got:
            samples.append(got[0] - released)
    samples.sort()
    if samples:
        print("python_handoff_p50_ms %.3f" % (samples[len(samples) // 2] * 1e3))
        print("python_handoff_p99_ms %.3f" % (samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3))
    other.stop()
    coord.stop()


if __name__ == "__main__":
    main()
