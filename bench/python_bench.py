#!/usr/bin/env python3
"""Python tooz's side of `tooz bench`: the same measures, where Python tooz supports them.

Usage: python_bench.py URL [--short]           prints one JSON object on its last line
       (PYBENCH_ONLY=lock_1,handoff,... runs only those measures)
       python_bench.py URL --watcher GROUP     (internal) the watch measure's other process

Each measure is bounded in count and time; one that fails or that the driver does not
implement is reported as {"na": "<why>"}. Timestamps across processes use time.monotonic_ns()
(CLOCK_MONOTONIC, system-wide on Linux, the clock the Rust side uses too).
"""
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait

from tooz import coordination

SHORT = "--short" in sys.argv
PREFIX = "pybench%d" % os.getpid()
WINDOW = 0.2 if SHORT else 3.0


def pick(full, short):
    return short if SHORT else full


def name(what):
    return ("%s-%s" % (PREFIX, what)).encode()


def started(url, who):
    coord = coordination.get_coordinator(url, name(who))
    coord.start()
    return coord


def percentiles(samples):
    if not samples:
        return {"samples": 0}
    s = sorted(samples)
    at = lambda p: s[int(round((len(s) - 1) * p))] * 1e3
    return {"samples": len(s), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": s[-1] * 1e3}


def stop_all(coords, budget=20.0):
    """Stops coordinators in parallel, giving up on stragglers after `budget` seconds."""

    def stop(c):
        try:
            c.stop()
        except Exception:
            pass

    if len(coords) <= 1:
        for c in coords:
            stop(c)
        return
    pool = ThreadPoolExecutor(max_workers=min(64, len(coords)))
    wait([pool.submit(stop, c) for c in coords], timeout=budget)
    pool.shutdown(wait=False, cancel_futures=True)


def lock_throughput(url, clients):
    coords = [started(url, "lock%d-%d" % (clients, i)) for i in range(clients)]
    limit = pick(200000, 200) // clients
    counts = [0] * clients
    errors = []
    start = time.perf_counter()

    def loop(i):
        try:
            lock = coords[i].get_lock(name("lock%d-%d" % (clients, i)))
            while counts[i] < limit and time.perf_counter() - start < WINDOW:
                lock.acquire()
                lock.release()
                counts[i] += 1
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    stop_all(coords)
    if errors:
        raise errors[0]
    return {"clients": clients, "count": sum(counts), "per_s": sum(counts) / elapsed}


def handoff(url):
    clients = pick(4, 2)
    coords = [started(url, "handoff-%d" % i) for i in range(clients)]
    limit = pick(20000, 100)
    state = {"last": None, "acquisitions": 0, "samples": []}
    guard = threading.Lock()
    errors = []
    start = time.perf_counter()

    def loop(me):
        try:
            lock = coords[me].get_lock(name("handoff"))
            while state["acquisitions"] < limit and time.perf_counter() - start < WINDOW:
                lock.acquire(blocking=True)
                acquired = time.perf_counter()
                with guard:
                    last = state["last"]
                    if last is not None and last[0] != me:
                        state["samples"].append(acquired - last[1])
                    state["acquisitions"] += 1
                time.sleep(0)
                with guard:
                    state["last"] = (me, time.perf_counter())
                lock.release()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WINDOW + 30)
    elapsed = time.perf_counter() - start
    stop_all(coords)
    if errors:
        raise errors[0]
    figures = percentiles(state["samples"])
    figures.update(clients=clients, acquisitions=state["acquisitions"],
                   acquisitions_per_s=state["acquisitions"] / elapsed,
                   handoffs=len(state["samples"]))
    return figures


def join_leave(url):
    coord = started(url, "joinleave")
    try:
        group = name("joinleave")
        coord.create_group(group).get()
        done, limit, start = 0, pick(100000, 100), time.perf_counter()
        while done < limit and time.perf_counter() - start < WINDOW:
            coord.join_group(group).get()
            coord.leave_group(group).get()
            done += 1
        per_s = done / (time.perf_counter() - start)
        try:
            coord.delete_group(group).get()
        except Exception:
            pass
        return {"count": done, "per_s": per_s}
    finally:
        stop_all([coord])


def get_members(url, out):
    tiers = [("10", 3), ("1000", 6), ("10000", 10)] if SHORT else \
        [("10", 10), ("1000", 1000), ("10000", 10000)]
    cap = pick(40.0, 10.0)
    reader = started(url, "reader")
    group = name("members")
    try:
        reader.create_group(group).get()
    except Exception:
        pass
    members, failed, setup_start = [], None, time.perf_counter()
    for tier, count in tiers:
        key = "get_members_" + tier
        if failed is None and count > 1000:
            failed = ("not attempted: every Python tooz coordinator runs threads of its own "
                      "(thread pool, client threads); 10,000 in one process overload the host")
        if failed is None:
            tier_start = time.perf_counter()
            try:
                while len(members) < count:
                    if time.perf_counter() - setup_start > cap:
                        failed = "setting up members took over %d s (stopped at %d)" % (
                            cap, len(members))
                        break
                    c = started(url, "member-%d" % len(members))
                    members.append(c)
                    c.join_group(group).get()
            except Exception as e:
                failed = "member %d failed: %s: %s" % (len(members), type(e).__name__, e)
        if failed is not None:
            out[key] = {"na": failed}
            continue
        setup_s = time.perf_counter() - tier_start
        samples, seen, start = [], 0, time.perf_counter()
        try:
            while len(samples) < pick(50, 3) and time.perf_counter() - start < WINDOW:
                t = time.perf_counter()
                seen = len(reader.get_members(group).get())
                samples.append(time.perf_counter() - t)
        except Exception as e:
            failed = "%s: %s" % (type(e).__name__, e)
            out[key] = {"na": failed}
            continue
        figures = percentiles(samples)
        figures.update(members=count, seen=seen, setup_s=setup_s)
        out[key] = figures
    stop_all(members)
    stop_all([reader])


def watch(url):
    member = started(url, "watched")
    group = name("watch")
    child = subprocess.Popen(
        [sys.executable, __file__, url, "--watcher", group.decode()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    cv = threading.Condition()

    def reader():
        for line in child.stdout:
            with cv:
                lines.append(line.strip())
                cv.notify()
        with cv:
            lines.append(None)
            cv.notify()

    threading.Thread(target=reader, daemon=True).start()

    def next_line():
        with cv:
            if not cv.wait_for(lambda: lines, timeout=10):
                raise RuntimeError("no event from the watcher process in 10 s")
            line = lines.pop(0)
        if line is None:
            raise RuntimeError("watcher ended: %s" % child.stderr.read().strip()[-300:])
        return line

    try:
        first = next_line()
        if first != "ready":
            raise RuntimeError("watcher: %s" % first)
        samples, start = [], time.perf_counter()
        while len(samples) < pick(300, 5) and time.perf_counter() - start < WINDOW:
            called = time.monotonic_ns()
            member.join_group(group).get()
            while True:
                line = next_line()
                if line.startswith("joined "):
                    samples.append((int(line.split()[1]) - called) / 1e9)
                    break
            member.leave_group(group).get()
            while not next_line().startswith("left"):
                pass
        figures = percentiles(samples)
        figures["watcher"] = "another process, run_watchers() every 1 ms"
        return figures
    finally:
        try:
            child.stdin.write("\n")
            child.stdin.flush()
            child.wait(timeout=5)
        except Exception:
            child.kill()
        stop_all([member])


def watcher(url, group):
    group = group.encode()
    coord = started(url, "watcher")
    try:
        coord.create_group(group).get()
    except Exception:
        pass

    def joined(event):
        print("joined %d" % time.monotonic_ns(), flush=True)

    def left(event):
        print("left", flush=True)

    try:
        coord.watch_join_group(group, joined)
        coord.watch_leave_group(group, left)
        coord.run_watchers()
    except Exception as e:
        print("error %s: %s" % (type(e).__name__, e), flush=True)
        stop_all([coord])
        return
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
    print("ready", flush=True)
    deadline = time.monotonic() + 600
    while not done.is_set() and time.monotonic() < deadline:
        coord.run_watchers()
        time.sleep(0.001)
    stop_all([coord])


def failover(url):
    group = name("election")
    samples, start = [], time.perf_counter()
    while len(samples) < pick(30, 3) and time.perf_counter() - start < 2 * WINDOW:
        n = len(samples)
        a, b = started(url, "leader-a%d" % n), started(url, "leader-b%d" % n)
        try:
            try:
                a.create_group(group).get()
            except Exception:
                pass
            elected = {}
            for who, c in (("a", a), ("b", b)):
                c.join_group(group).get()
                c.watch_elected_as_leader(
                    group, lambda event, who=who: elected.setdefault(who, time.perf_counter()))
            deadline = time.perf_counter() + 10
            while "a" not in elected and time.perf_counter() < deadline:
                a.run_watchers()
                time.sleep(0.001)
            if "a" not in elected:
                raise RuntimeError("no first leader within 10 s")
            b.run_watchers()
            if "b" in elected:
                raise RuntimeError("two leaders at once")
            stopped = time.perf_counter()
            a.stop()
            deadline = stopped + 40
            while "b" not in elected and time.perf_counter() < deadline:
                b.run_watchers()
                time.sleep(0.001)
            if "b" not in elected:
                raise RuntimeError("no new leader within 40 s")
            samples.append(elected["b"] - stopped)
        finally:
            stop_all([b])
    return percentiles(samples)


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(url):
    idle = pick(200, 5)
    before = resident_bytes()
    coords = [started(url, "idle-%d" % i) for i in range(idle)]
    per_coordinator = (resident_bytes() - before) / idle
    stop_all(coords)
    many = pick(500, 10)
    coord = started(url, "memory")
    try:
        before = resident_bytes()
        locks = []
        for i in range(many):
            lock = coord.get_lock(name("mem-lock-%d" % i))
            lock.acquire()
            locks.append(lock)
        per_lock = (resident_bytes() - before) / many
        for lock in locks:
            lock.release()
        try:
            before = resident_bytes()
            groups = []
            for i in range(many):
                g = name("mem-group-%d" % i)
                coord.create_group(g).get()
                coord.join_group(g).get()
                groups.append(g)
            per_group = (resident_bytes() - before) / many / 1024
            for g in groups:
                coord.leave_group(g).get()
                coord.delete_group(g).get()
        except Exception as e:
            per_group = "n/a: %s: %s" % (type(e).__name__, e)
        return {"idle_coordinator_kib": per_coordinator / 1024, "per_lock_kib": per_lock / 1024,
                "per_group_kib": per_group, "coordinators": idle, "locks_and_groups": many}
    finally:
        stop_all([coord])


def failure(e, version):
    """Why a measure has no figures, on one line. tooz's NotImplemented often comes without a
    message: the tooz function that raised it is named instead."""
    text = str(e).splitlines()[0] if str(e) else ""
    if type(e).__name__ == "NotImplemented":
        frames = traceback.extract_tb(e.__traceback__)
        where = frames[-1].name if frames else "?"
        return "NotImplemented: tooz %s's %s driver has no %s()%s" % (
            version, sys.argv[1].split("://")[0], where, " (%s)" % text if text else "")
    return "%s: %s" % (type(e).__name__, text)


def main():
    url = sys.argv[1]
    if "--watcher" in sys.argv:
        watcher(url, sys.argv[sys.argv.index("--watcher") + 1])
        return
    from importlib import metadata
    out = {"tooz_version": metadata.version("tooz")}
    measures = [
        ("memory", lambda: memory(url)),
        ("lock_1", lambda: lock_throughput(url, 1)),
        ("lock_16", lambda: lock_throughput(url, 16)),
        ("handoff", lambda: handoff(url)),
        ("join_leave", lambda: join_leave(url)),
        ("get_members", lambda: get_members(url, out)),
        ("watch", lambda: watch(url)),
        ("failover", lambda: failover(url)),
    ]
    only = os.environ.get("PYBENCH_ONLY")
    if only:
        measures = [(key, run) for key, run in measures if key in only.split(",")]
    for key, run in measures:
        try:
            figures = run()
            if figures is not None:
                out[key] = figures
        except Exception as e:
            why = failure(e, out["tooz_version"])
            if key == "get_members":
                for tier in ("10", "1000", "10000"):
                    out.setdefault("get_members_" + tier, {"na": why})
            else:
                out[key] = {"na": why}
    print(json.dumps(out), flush=True)
    # Coordinators left behind by a measure that gave up must not hold the exit.
    os._exit(0)


if __name__ == "__main__":
    main()
