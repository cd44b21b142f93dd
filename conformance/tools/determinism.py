#!/usr/bin/python3
"""Run `echoconf run --builtin all` several times in a row and check that every run gives
the same verdict for every (server, case) pair.

    conformance/tools/determinism.py                 # 20 runs, default profile
    conformance/tools/determinism.py --runs 5 --profile quick --keep /tmp/det

Prints one line per run and then: runs, identical yes/no, mean/min/max wall-clock duration.
Exit status 0 when all runs agree, 1 when they do not (the differing verdicts are listed),
2 when a run could not produce its reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFORMANCE = Path(__file__).resolve().parent.parent
ECHOCONF = CONFORMANCE / "echoconf"


def verdicts(report_dir: Path) -> dict[tuple[str, str], str]:
    """(server, case id) -> outcome, from the per-server report.json files of one run."""
    summary = json.loads((report_dir / "summary.json").read_text())
    out = {}
    for server in summary["servers"]:
        doc = json.loads((report_dir / server / "report.json").read_text())
        for c in doc["cases"]:
            out[(server, c["id"])] = c["outcome"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--profile", default="default", choices=["quick", "default", "thorough"])
    p.add_argument("--keep", metavar="DIR", help="keep each run's reports in DIR/run-N")
    args = p.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="echoconf-det-"))
    first: dict[tuple[str, str], str] | None = None
    differences: dict[tuple[str, str], set[str]] = {}
    durations: list[float] = []
    for i in range(1, args.runs + 1):
        out = base / f"run-{i}"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(ECHOCONF), "run", "--builtin", "all", "--profile",
                               args.profile, "--report", str(out)], capture_output=True, text=True)
        took = time.monotonic() - t0
        durations.append(took)
        try:
            v = verdicts(out)
        except (OSError, ValueError, KeyError) as e:
            print(f"run {i}: no reports ({e}); exit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            return 2
        bad = sorted(f"{s}:{c}={o}" for (s, c), o in v.items() if o in ("failed", "error", "xpassed"))
        print(f"run {i:2}: exit {proc.returncode}, {took:5.1f} s, {len(v)} verdicts"
              + (f", not passed: {', '.join(bad)}" if bad else ""), flush=True)
        if first is None:
            first = v
            continue
        for key in set(first) | set(v):
            if first.get(key) != v.get(key):
                differences.setdefault(key, {str(first.get(key))}).add(str(v.get(key)))
    identical = not differences
    print(f"runs: {len(durations)}; identical verdicts: {'yes' if identical else 'no'}; duration mean "
          f"{statistics.mean(durations):.1f} s, min {min(durations):.1f} s, max {max(durations):.1f} s")
    for (server, case), seen in sorted(differences.items()):
        print(f"  differs: {server} {case}: {', '.join(sorted(seen))}")
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
