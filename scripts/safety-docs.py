#!/usr/bin/env python3
"""Rewrites the generated section of docs/safety.md from the summaries of `scripts/safety`.

Usage: safety-docs.py RESULTS_DIR DOC [CHECKER]
RESULTS_DIR holds <target>.jsonl (one summary per run) and mutants.jsonl. With CHECKER (the
tooz-safety binary), every saved run is checked again by it (`check DIR --json`), so the page
shows what the current checker finds in the recorded histories.
`safety-docs.py --line` prints one progress line for the summary on standard input.
"""
import json
import pathlib
import subprocess
import sys

BEGIN = "<!-- scripts/safety: generated section begins -->"
END = "<!-- scripts/safety: generated section ends -->"
CHECKS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
TARGETS = ["file", "ipc", "redis", "redis-sentinel", "zookeeper", "zk3"]
MUTANTS = {
    "a": "release and refresh without an owner check",
    "b": "waiter granted the lock without checking again",
    "c": "fencing token from a counter that restarts",
    "d": "client ignores its lost signal",
    "e": "retry after a lost reply does not find its first attempt",
    "f": "no lock at all (negative control)",
}


CHECKER = None


def recheck(summary):
    """Replaces a summary's verdicts by the current checker's on its saved run."""
    if CHECKER is None or summary.get("error") or not summary.get("dir"):
        return summary
    out = subprocess.run([CHECKER, "check", summary["dir"], "--json"],
                         capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"checking {summary['dir']} failed: {out.stderr.strip()}")
    report = json.loads(out.stdout)
    summary["violations"] = {c["check"]: c["count"] for c in report["checks"]}
    summary["passed"] = out.returncode == 0
    recovery = report["stats"].get("max_recovery_ns")
    summary["max_recovery_ms"] = recovery / 1e6 if recovery is not None else None
    return summary


def load(path):
    if not path.exists():
        return []
    return [recheck(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def target_section(target, runs):
    ok = [r for r in runs if not r.get("error")]
    lines = [f"### {target}", ""]
    if not ok:
        return lines + ["No run recorded.", ""]
    url = ok[0]["url"]
    lines.append(f"`{url}`, {ok[0]['clients']} client processes per run.")
    lines.append("")
    lines.append("| runs | seconds each | faults injected | lock ops | "
                 + " | ".join(CHECKS) + " | max recovery | passed |")
    lines.append("|---|---|---|---|" + "---|" * len(CHECKS) + "---|---|")
    groups = {}
    for r in ok:
        groups.setdefault(r["label"], []).append(r)
    for label, group in groups.items():
        faults = {}
        for r in group:
            for cls, n in r["faults"].items():
                faults[cls] = faults.get(cls, 0) + n
        fault_text = ", ".join(f"{cls} {n}" for cls, n in sorted(faults.items())) or "none"
        cells = []
        for check in CHECKS:
            total = sum(r["violations"].get(check, 0) for r in group)
            tolerated = any(check in r.get("tolerated", []) for r in group)
            cells.append(f"{total}{' (tolerated)' if tolerated and total else ''}")
        recoveries = [r["max_recovery_ms"] for r in group if r.get("max_recovery_ms") is not None]
        recovery = f"{max(recoveries) / 1000:.2f} s" if recoveries else "—"
        passed = sum(1 for r in group if r["passed"])
        seconds = round(sum(r["seconds"] for r in group) / len(group))
        name = "mixed" if label == "mixed" else label
        lines.append(
            f"| {len(group)} × {name} | {seconds} | {fault_text} | "
            f"{sum(r['lock_ops'] for r in group):,} | " + " | ".join(cells)
            + f" | {recovery} | {passed}/{len(group)} |"
        )
    failed = len(runs) - len(ok)
    if failed:
        lines.append("")
        lines.append(f"{failed} run(s) did not complete (see the run directories).")
    lines.append("")
    return lines


def mutant_section(runs):
    lines = ["### Seeded mutants (redis, pause faults)", ""]
    if not runs:
        return lines + ["No run recorded.", ""]
    lines.append("| mutant | bug | caught | checks that caught it |")
    lines.append("|---|---|---|---|")
    by = {}
    for r in runs:
        by.setdefault(r["mutant"], []).append(r)
    for mutant in sorted(by):
        group = by[mutant]
        caught = sum(1 for r in group if not r["passed"])
        checks = {}
        for r in group:
            for check, n in r["violations"].items():
                if n and check not in r.get("tolerated", []):
                    checks[check] = checks.get(check, 0) + 1
        found = ", ".join(f"{c} in {n}" for c, n in sorted(checks.items())) or "—"
        lines.append(f"| {mutant} | {MUTANTS.get(mutant, '')} | {caught}/{len(group)} | {found} |")
    lines.append("")
    return lines


def progress_line(summary):
    """One line for the terminal about one run's summary."""
    bad = {k: v for k, v in summary.get("violations", {}).items() if v}
    verdict = "PASS" if summary.get("passed") else "FAIL"
    if summary.get("mutant"):
        verdict = "not caught" if summary.get("passed") else "caught"
        name = f"mutant {summary['mutant']}"
    else:
        name = f"{summary.get('target', '?'):<15} {summary.get('label', ''):<16}"
    faults = sum(summary.get("faults", {}).values())
    return (f"{name} ops {summary.get('lock_ops', 0):>6}  faults {faults:>3}  "
            f"violations {bad or 0}  {verdict}")


def main():
    if sys.argv[1:] == ["--line"]:
        print(progress_line(json.loads(sys.stdin.read())))
        return
    global CHECKER
    results, doc = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    CHECKER = sys.argv[3] if len(sys.argv) > 3 else None
    body = [BEGIN, "", "## Results (`scripts/safety gate`, `scripts/safety mutants`)", ""]
    for target in TARGETS:
        body += target_section(target, load(results / f"{target}.jsonl"))
    body += mutant_section(load(results / "mutants.jsonl"))
    body.append(END)
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:start] + "\n".join(body) + text[end:])


if __name__ == "__main__":
    main()
