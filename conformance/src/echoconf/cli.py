"""`echoconf run …`: the command-line front end. It runs pytest in-process with the
echoconf plugin over the echoconf.cases package, or (for `--builtin all`) one child
run per reference server in parallel and then prints a servers x families matrix.

Exit status: 0 every case the implementation must pass passed; 1 some case failed (an
expected failure that passes counts as failed); 2 usage or harness error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from . import registry, report
from .caselib import FAMILIES

PKG = Path(__file__).resolve().parent
CASES = PKG / "cases"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echoconf", description="Conformance kit for TCP echo servers (RFC 862).")
    from . import __version__
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the conformance suite against a server")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--command", help='server command line with a {port} placeholder, e.g. "./srv --port {port}"')
    src.add_argument("--target", help="HOST:PORT of a server that is already running")
    src.add_argument("--builtin", help="reference server name (echo-epoll, …) or `all`")
    src.add_argument("--impl", help="implementation name from implementations.toml")
    src.add_argument("--image", help="a server image: run it in Docker (internal network) and test it")
    r.add_argument("--report", metavar="DIR", help="write report.json, junit.xml, report.md here")
    r.add_argument("--list", action="store_true", help="list the cases (id, level, requirement)")
    r.add_argument("--case", action="append", default=[], metavar="PATTERN",
                   help="select cases by glob on ids (repeatable), e.g. 'close.*'")
    r.add_argument("--level", action="append", default=[], choices=["rfc862", "derived", "robust"])
    r.add_argument("--seed", type=int, help="seed for Hypothesis and every random choice (replay)")
    r.add_argument("--hang-bound", type=float, metavar="SECONDS",
                   help="a stream on which nothing moves for SECONDS fails as a timeout at once "
                        "instead of at its case's deadline (proves hanging servers faster); "
                        "--image: 5 unless given, 0 for none")
    r.add_argument("--profile", default="default", choices=["quick", "default", "thorough"])
    r.add_argument("--time-scale", type=_time_scale, metavar="F",
                   help="multiply every network deadline by F >= 1 (a slow or remote link); default: "
                        "1, or measured first for a --target not on loopback")
    r.add_argument("--ipv6-target", metavar="HOST:PORT",
                   help="with --target: where robust.ipv6 reaches the server over IPv6 (for a "
                        "--target given as an IPv4 address)")
    r.add_argument("--capability", action="append", default=[], choices=list(registry.CAPABILITIES),
                   help="declare a capability of the server (default for --command/--target: concurrent)")
    r.add_argument("--without", action="append", default=[], choices=list(registry.CAPABILITIES),
                   help="declare that the server lacks a capability")
    r.add_argument("--transport", choices=list(registry.TRANSPORTS),
                   help="what the server serves (RFC 862 defines both): tcp (the default for --command and "
                        "--target), udp (only the udp.* cases run) or both; a registry entry says its own")
    r.add_argument("--strict", action="store_true",
                   help="a failed SHOULD case (a recommendation not met) fails the run too: exit 1")
    r.add_argument("--xfail", action="append", default=[], metavar="CASE=REASON",
                   help="an expected failure (a pass then fails the run)")
    r.add_argument("--registry", help="implementations.toml to use")
    r.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parallel servers for --builtin all (default: CPU count)")
    r.add_argument("--pytest-output", action="store_true", help="show pytest's own output")
    r.add_argument("--no-summary", action="store_true", help=argparse.SUPPRESS)
    d = r.add_argument_group("--image (Docker)")
    d.add_argument("--port", type=int, default=7, help="the port the image's server listens on (default 7)")
    d.add_argument("--env-profile", action="append", default=[], metavar="NAME",
                   help="hostile environment profile, repeatable (default: default): default, tiny-buffers, "
                        "low-nofile, memory, cpu, ipv6")
    d.add_argument("--command-in-image", metavar="CMD", help="command to run in the image instead of its own")
    d.add_argument("--faults", action="store_true", help="also pause/resume, cut/restore network, kill/restart")
    r.add_argument("pytest_args", nargs="*", help="extra pytest arguments after --")
    from . import bench
    bench.add_parser(sub)
    return p


def _time_scale(text: str) -> float:
    import math

    try:
        f = float(text)
    except ValueError:
        f = math.nan
    if not math.isfinite(f) or f < 1:
        raise argparse.ArgumentTypeError(f"wants a number >= 1 (it multiplies network deadlines), got {text!r}")
    return f


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.cmd == "bench":
        from . import bench
        return bench.main(args)
    if args.cmd == "run":
        docker_only = [flag for flag, given in (("--env-profile", args.env_profile), ("--faults", args.faults),
                                                ("--command-in-image", args.command_in_image)) if given]
        if docker_only and not args.image:
            p.error(f"{', '.join(docker_only)}: only with --image (a server in a container)")
        try:
            if args.image:
                from . import image
                return image.run(args)
            if args.builtin == "all":
                return run_all(args)
            return run_one(args)
        except registry.RegistryError as e:
            print(f"echoconf: {e}", file=sys.stderr)
            return 2
    return 2


def pytest_argv(args: argparse.Namespace) -> list[str]:
    a = [str(CASES), "-p", "echoconf.plugin", "-p", "_hypothesis_pytestplugin", "-p", "pytest_timeout",
         "-p", "no:cacheprovider", "--rootdir", str(CASES), "--timeout-method", "signal",
         # pytest plugins the cases never use cost a tenth of a second at every start
         "-p", "no:doctest", "-p", "no:nose", "-p", "no:pastebin", "-p", "no:legacypath",
         "-p", "no:stepwise", "--assert=plain",
         "--echoconf-profile", args.profile]
    if args.command:
        a += ["--echoconf-command", args.command]
    if args.target:
        a += ["--echoconf-target", args.target]
    if args.builtin:
        a += ["--echoconf-builtin", args.builtin]
    if args.impl:
        a += ["--echoconf-impl", args.impl]
    if args.registry:
        a += ["--echoconf-registry", args.registry]
    if args.seed is not None:
        a += ["--echoconf-seed", str(args.seed), "--hypothesis-seed", str(args.seed)]
    if args.hang_bound:
        a += ["--echoconf-hang-bound", str(args.hang_bound)]
    if args.time_scale is not None:
        a += ["--echoconf-time-scale", repr(args.time_scale)]
    if args.ipv6_target:
        a += ["--echoconf-ipv6-target", args.ipv6_target]
    for c in args.case:
        a += ["--echoconf-case", c]
    for lvl in args.level:
        a += ["--echoconf-level", lvl]
    for c in args.capability:
        a += ["--echoconf-capability", c]
    for c in args.without:
        a += ["--echoconf-without", c]
    if args.transport:
        a += ["--echoconf-transport", args.transport]
    for x in args.xfail:
        a += ["--echoconf-xfail", x]
    if args.list:
        a += ["--echoconf-list"]
    if args.strict:
        a += ["--echoconf-strict"]
    if args.report:
        rep = Path(args.report)
        a += ["--echoconf-report", str(rep), "--junitxml", str(rep / "junit.xml"),
              "-o", "junit_family=xunit2", "-o", "junit_suite_name=echoconf"]
    if args.pytest_output:
        a += ["--echoconf-pytest-output", "-v"]
    else:
        a += ["-q", "--no-header", "-W", "ignore"]
    if args.no_summary:
        a += ["--echoconf-no-summary"]
    return a + list(args.pytest_args)


def _check_source(args: argparse.Namespace) -> str | None:
    if not (args.command or args.target or args.builtin or args.impl) and not args.list:
        return "say which server to test: --command CMD, --target HOST:PORT, --builtin NAME or --impl NAME"
    if args.command and "{port}" not in args.command:
        return '--command needs a {port} placeholder, e.g. --command "./server --port {port}"'
    name = args.builtin
    if args.impl and not name:
        name = registry.find(args.impl, Path(args.registry) if args.registry else None).builtin
    if name and not args.list and registry.find_binary(name) is None:
        return f"server binary {name} not found; {registry.BUILD_HINT}"
    return None


def run_one(args: argparse.Namespace) -> int:
    problem = _check_source(args)
    if problem:
        print(f"echoconf: {problem}", file=sys.stderr)
        return 2
    import pytest

    import signal

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # pytest then finishes the session: our servers are stopped

    signal.signal(signal.SIGTERM, _terminate)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins we name
    os.environ.pop("PYTEST_ADDOPTS", None)
    code = int(pytest.main(pytest_argv(args)))
    if code in (0, 1, 2):
        return code
    return 2  # pytest's usage error (4), internal error (3), no tests (5) …


# -- --builtin all -------------------------------------------------------------------------
def run_all(args: argparse.Namespace) -> int:
    reg = Path(args.registry) if args.registry else None
    impls = registry.references(reg)
    missing = [i.builtin for i in impls if i.builtin and registry.find_binary(i.builtin) is None]
    if not impls:
        print("echoconf: the registry lists no builtin reference servers", file=sys.stderr)
        return 2
    if missing:
        print(f"echoconf: {', '.join(m for m in missing if m)} not found; {registry.BUILD_HINT}",
              file=sys.stderr)
        return 2
    if args.list:
        args.builtin = None
        return run_one(args)
    tmp = None
    if args.report:
        base = Path(args.report)
    else:
        tmp = tempfile.mkdtemp(prefix="echoconf-")
        base = Path(tmp)
    base.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    width = max(len(i.name) for i in impls)

    def child(impl: registry.Implementation) -> tuple[str, int]:
        cmd = [sys.executable, "-m", "echoconf", "run", "--impl", impl.name, "--report",
               str(base / impl.name), "--profile", args.profile, "--no-summary"]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        if args.time_scale is not None:
            cmd += ["--time-scale", repr(args.time_scale)]
        if args.registry:
            cmd += ["--registry", args.registry]
        if args.strict:
            cmd += ["--strict"]
        for c in args.case:
            cmd += ["--case", c]
        for lvl in args.level:
            cmd += ["--level", lvl]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(PKG.parent), *filter(None, [os.environ.get("PYTHONPATH")])]), COLUMNS="200")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        (base / impl.name).mkdir(parents=True, exist_ok=True)
        with open(base / impl.name / "output.txt", "wb") as log:
            for line in proc.stdout:
                log.write(line)
                with lock:
                    print(f"{impl.name:{width}} | {line.decode(errors='replace').rstrip()}", flush=True)
        return impl.name, proc.wait()

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        codes = dict(pool.map(child, impls))
    status = matrix(base, impls, codes)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def shown_families(base: Path, impls: list[registry.Implementation]) -> list[str]:
    """The families of which some report ran a case: docker.* run only under --image, so a
    local matrix has no column for them."""
    ran: set[str] = set()
    for impl in impls:
        try:
            doc = json.loads((base / impl.name / "report.json").read_text())
        except (OSError, ValueError):
            continue
        ran |= {c["id"].split(".", 1)[0] for c in doc["cases"] if c["outcome"] != "skipped"}
    return [f for f in FAMILIES if f in ran] or list(FAMILIES)


def matrix(base: Path, impls: list[registry.Implementation], codes: dict[str, int]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="echoconf: reference servers x case families (passed/run; skipped)")
    table.add_column("server")
    families = shown_families(base, impls)
    for f in families:
        table.add_column(f, justify="center")
    table.add_column("time", justify="right")
    table.add_column("exit", justify="right")
    combined: dict[str, Any] = {"version": 1, "servers": {}}
    worst = 0
    for impl in impls:
        code = codes.get(impl.name, 2)
        worst = max(worst, code if code in (0, 1, 2) else 2)
        path = base / impl.name / "report.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            table.add_row(impl.name, *["[red]?[/]"] * len(families), "-", f"[red]{code}[/]")
            combined["servers"][impl.name] = {"exit_status": code, "error": "no report"}
            continue
        cells = []
        for fam in families:
            cs = [c for c in doc["cases"] if c["id"].split(".")[0] == fam]
            ran = [c for c in cs if c["outcome"] != "skipped"]
            ok = [c for c in ran if c["outcome"] in ("passed", "xfailed")]
            skipped = len(cs) - len(ran)
            colour = "green" if len(ok) == len(ran) else "red"
            cell = f"[{colour}]{len(ok)}/{len(ran)}[/]" + (f" [yellow]+{skipped} skipped[/]" if skipped else "")
            cells.append(cell if cs else "[dim]-[/]")
        table.add_row(impl.name, *cells, f"{doc['summary']['duration']:.1f}s",
                      f"[{'green' if code == 0 else 'red'}]{code}[/]")
        combined["servers"][impl.name] = {"exit_status": code, "summary": doc["summary"],
                                          "failed": [c["id"] for c in doc["cases"]
                                                     if c["outcome"] in report.BAD]}
    combined["exit_status"] = worst
    (base / "summary.json").write_text(json.dumps(combined, indent=2) + "\n")
    console = Console(highlight=False, width=max(shutil.get_terminal_size((120, 20)).columns, 110))
    console.print(table)
    for name, s in combined["servers"].items():
        for cid in s.get("failed", []):
            console.print(f"[red]failed[/] {name}: {cid} (see {base / name / 'report.md'})", markup=True)
    console.print(f"exit {worst}", highlight=False)
    return worst


if __name__ == "__main__":
    sys.exit(main())
