#!/usr/bin/env python3
"""Where the last `scripts/test.sh` run spent its time, as Markdown tables.

Reads what that run left in target/:
  test-timings/steps.tsv        each step's wall time (scripts/test.sh)
  nextest/default/junit.xml     each test's time, retries included (cargo-nextest)
  cargo-timings/cargo-timing.html  each crate's compile time (only after
                                   `scripts/test.sh --timings`, which builds with
                                   cargo's --timings)
Usage: scripts/timings.py [--top N] [--steps]   (--steps: the steps' table alone)
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def table(headers, rows, align):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def mmss(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def steps():
    path = os.path.join(TARGET, "test-timings", "steps.tsv")
    if not os.path.exists(path):
        return None
    rows, total = [], None
    with open(path) as f:
        next(f, None)
        for line in f:
            name, _, secs = line.rstrip("\n").rpartition("\t")
            if not name:
                continue
            if name == "total":
                total = int(secs)
            else:
                rows.append((name, int(secs)))
    whole = total if total is not None else sum(s for _, s in rows)
    # A step that ran beside another ("(ran beside ...)") has no share of its own.
    body = [(n, s, mmss(s), "" if "(ran beside" in n else f"{100 * s / whole:.0f}%" if whole else "") for n, s in rows]
    body.append(("**total**" + ("" if total is not None else " (run did not finish)"), whole, mmss(whole), ""))
    return "### Steps (wall time)\n\n" + table(["step", "s", "m:ss", "share"], body, "lrrr")


def tests(top):
    path = os.path.join(TARGET, "nextest", "default", "junit.xml")
    if not os.path.exists(path):
        return None
    root = ET.parse(path).getroot()
    binaries, cases, flaky, failed = [], [], [], []
    for suite in root.iter("testsuite"):
        times = []
        for case in suite.iter("testcase"):
            t = float(case.get("time") or 0)
            name = f"{suite.get('name')} {case.get('name')}"
            times.append((t, case.get("name")))
            cases.append((t, name))
            if case.find("flakyFailure") is not None or case.find("flakyError") is not None:
                flaky.append(name)
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(name)
        if not times:
            continue
        slow = max(times)
        binaries.append((suite.get("name"), len(times), sum(t for t, _ in times), slow))
    binaries.sort(key=lambda b: -b[2])
    out = ["### Test binaries (time summed over their tests; tests run side by side)", "",
           table(["binary", "tests", "sum of test times, s", "slowest test", "s"],
                 [(b, n, f"{s:.1f}", slow[1], f"{slow[0]:.1f}") for b, n, s, slow in binaries],
                 "lrrlr")]
    cases.sort(reverse=True)
    out += ["", f"### Slowest {top} tests", "",
            table(["test", "s"], [(n, f"{t:.1f}") for t, n in cases[:top]], "lr")]
    out += ["", "Flaky (failed, then passed on the retry): " + (", ".join(flaky) if flaky else "none")]
    if failed:
        out += ["", "Failed: " + ", ".join(failed)]
    return "\n".join(out)


def crates(top):
    path = os.path.join(TARGET, "cargo-timings", "cargo-timing.html")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        html = f.read()
    m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S)
    if not m:
        return None
    units = [u for u in json.loads(m.group(1)) if u["duration"] > 0]
    total = re.search(r"<td>Total time:</td><td>([^<]*)</td>", html)
    if not units:
        return "### Compilation\n\nThe last build with --timings had nothing to compile."
    units.sort(key=lambda u: -u["duration"])
    rows = [(f"{u['name']} {u['version']}{u.get('target', '')}".strip(), f"{u['duration']:.1f}")
            for u in units[:top]]
    head = f"### Slowest {top} of the {len(units)} units compiled"
    if total:
        head += f" (cargo build, {total.group(1).strip()})"
    return head + "\n\n" + table(["unit", "s"], rows, "lr")


def main():
    top = 10
    if "--top" in sys.argv:
        top = int(sys.argv[sys.argv.index("--top") + 1])
    if "--steps" in sys.argv:
        parts = [p for p in (steps(),) if p]
    else:
        parts = [p for p in (steps(), tests(top), crates(top)) if p]
    if not parts:
        print("no timings yet: run scripts/test.sh first", file=sys.stderr)
        return 1
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
