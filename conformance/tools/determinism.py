#!/usr/bin/python3
"""Run the suite several times in a row and check that every run gives the same verdict for
every (server, case) pair; optionally with a CPU hog on another core.

    conformance/tools/determinism.py                          # 20 runs of --builtin all
    conformance/tools/determinism.py --runs 5 --profile quick --keep /tmp/det
    conformance/tools/determinism.py --meta --runs 10 --hog   # the meta-test, under load

--meta runs the meta-test (conformance/tests/test_meta.py: every registry entry, reference,
real-world and broken) instead of `--builtin all`, and also requires each run to pass.
--hog keeps one core busy (a spinning process pinned to the last CPU) for the whole time.

Prints one line per run and then: runs, identical yes/no, mean/min/max wall-clock duration.
Exit status 0 when all runs agree (and, with --meta, all passed), 1 when they do not (the
differing verdicts are listed), 2 when a run could not produce its reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

CONFORMANCE = Path(__file__).resolve().parent.parent
REPO = CONFORMANCE.parent
ECHOCONF = CONFORMANCE / "echoconf"
sys.path.insert(0, str(CONFORMANCE / "src"))
from echoconf.report import BAD  # noqa: E402
Verdicts = dict[tuple[str, str], str]


def verdicts(report_dir: Path) -> Verdicts:
    """(server, case id) -> outcome, from every report.json below report_dir (one folder per
    server: `--builtin all` and the meta-test both lay their reports out so)."""
    out = {}
    for path in sorted(report_dir.glob("*/report.json")):
        doc = json.loads(path.read_text())
        for c in doc["cases"]:
            out[(path.parent.name, c["id"])] = c["outcome"]
    if not out:
        raise ValueError(f"no report.json below {report_dir}")
    return out


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a whole run in a session of its own: stopped (this tool interrupted or terminated),
    everything it started goes with it, not only its first process."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)  # type: ignore[call-overload]
    try:
        out, err = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_builtin_all(out: Path, profile: str) -> tuple[int, Path, str]:
    proc = _run([sys.executable, str(ECHOCONF), "run", "--builtin", "all", "--profile", profile,
                 "--report", str(out)])
    return proc.returncode, out, proc.stdout[-2000:] + proc.stderr[-2000:]


def run_meta(out: Path) -> tuple[int, Path, str]:
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                 str(out), str(CONFORMANCE / "tests" / "test_meta.py")], cwd=REPO)
    return proc.returncode, out / "meta0", proc.stdout[-3000:] + proc.stderr[-1000:]


@contextlib.contextmanager
def hog(enabled: bool) -> Iterator[None]:
    """A process that spins on the last CPU while the runs go on; it ends with them."""
    if not enabled:
        yield
        return
    cpu = max(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\n"
                             "while True:\n    pass\n"], start_new_session=True)
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--profile", default="default", choices=["quick", "default", "thorough"],
                   help="profile of the --builtin all runs (the meta-test sets its own)")
    p.add_argument("--meta", action="store_true", help="run the meta-test instead of --builtin all")
    p.add_argument("--hog", action="store_true", help="keep one core busy during the runs")
    p.add_argument("--keep", metavar="DIR", help="keep each run's reports in DIR/run-N")
    args = p.parse_args()
    # SIGTERM as Ctrl-C: the hog and the run under way are ended on the way out.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="echoconf-det-"))
    base.mkdir(parents=True, exist_ok=True)  # pytest's --basetemp wants its parent to exist
    first: Verdicts | None = None
    differences: dict[tuple[str, str], set[str]] = {}
    durations: list[float] = []
    failed_runs = 0
    with hog(args.hog):
        for i in range(1, args.runs + 1):
            t0 = time.monotonic()
            out = base / f"run-{i}"
            code, reports, tail = run_meta(out) if args.meta else run_builtin_all(out, args.profile)
            took = time.monotonic() - t0
            durations.append(took)
            try:
                v = verdicts(reports)
            except (OSError, ValueError, KeyError) as e:
                print(f"run {i}: no reports ({e}); exit {code}\n{tail}")
                return 2
            failed_runs += code != 0
            bad = sorted(f"{s}:{c}={o}" for (s, c), o in v.items() if o in BAD and not s.startswith("broken."))
            print(f"run {i:2}: exit {code}, {took:5.1f} s, {len(v)} verdicts"
                  + (f", not passed: {', '.join(bad)}" if bad else "")
                  + (f"\n{tail}" if code and args.meta else ""), flush=True)
            if first is None:
                first = v
                continue
            for key in set(first) | set(v):
                if first.get(key) != v.get(key):
                    differences.setdefault(key, {str(first.get(key))}).add(str(v.get(key)))
    identical = not differences
    print(f"runs: {len(durations)}{' with a CPU hog' if args.hog else ''}; identical verdicts: "
          f"{'yes' if identical else 'no'}; runs that failed: {failed_runs}; duration mean "
          f"{statistics.mean(durations):.1f} s, min {min(durations):.1f} s, max {max(durations):.1f} s")
    for (server, case), seen in sorted(differences.items()):
        print(f"  differs: {server} {case}: {', '.join(sorted(seen))}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if identical and not (args.meta and failed_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
