"""`echoconf bench`: how fast a server echoes, side by side with others and with the loopback
ceiling, measured in one run. The load is C (tools/echo-bench: every byte checked, a wrong one
fails the bench); this module starts the servers, runs each mode a few times, keeps the
median and hands the figures to benchout for the table, bench.json, the plots and the page.

Every figure is also given as a ratio: to the ceiling measured in the same run (iperf3's
one-way loopback stream when iperf3 is there, else echo-bench's own) and to the first server
named. Ratios are what compare across machines; absolute figures belong to this one."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import registry
from .benchload import (DEFAULT_MODES, MODES, BenchError, Outcome, Server, ceiling,
                        echo_bench, run_mode)
from .target import HarnessError, OwnedServer, RemoteTarget, ServerSpec, proc_stat

SCHEMA = 1


def start_servers(opts: argparse.Namespace, stack: contextlib.ExitStack) -> list[Server]:
    """The servers named, in order: --builtin NAME (or all), --command CMD, --target HOST:PORT,
    --image IMAGE (in a container on an internal network of a lab that `stack` closes)."""
    servers: list[Server] = []
    if opts.baseline:
        binary = registry.find_binary("echo-baseline")
        if binary is None:
            raise BenchError(f"echo-baseline not found; {registry.BUILD_HINT}")
        servers.append(Server("echo-baseline", OwnedServer(ServerSpec(
            [str(binary), "--host", "127.0.0.1", "--port", "{port}"], label="echo-baseline"))))
    for name in opts.builtin:
        names = [i.builtin for i in registry.references() if i.builtin] if name == "all" else [name]
        for n in names:
            binary = registry.find_binary(n)
            if binary is None:
                raise BenchError(f"server binary {n} not found; {registry.BUILD_HINT}")
            impl = registry.by_builtin(n)
            spec = ServerSpec.from_builtin(str(binary))
            # The reference servers refuse clients past --max-conns (1024 unless told): room
            # for the hold's, which is the bench's own setting, not the server's limit.
            spec.argv += ["--max-conns", str(opts.hold + 64)]
            own = OwnedServer(spec)
            servers.append(Server(n, own, udp=impl is not None and impl.transport != "tcp",
                                  concurrent=impl is None or "concurrent" in impl.capabilities))
    for cmd in opts.command:
        if "{port}" not in cmd:
            raise BenchError(f'--command needs a {{port}} placeholder, e.g. "./server --port {{port}}": {cmd!r}')
        label = os.path.basename(shlex.split(cmd)[0])
        servers.append(Server(label, OwnedServer(ServerSpec.from_command(cmd)), udp=opts.udp))
    for t in opts.target:
        host, _, port = t.rpartition(":")
        if not host or not port.isdigit():
            raise BenchError(f"--target wants HOST:PORT, got {t!r}")
        servers.append(Server(t, RemoteTarget(host.strip("[]"), int(port)), udp=opts.udp))
    if opts.image:
        from .container import DockerTarget
        from .dockerenv import DockerEnvError
        from .lab import Lab

        try:
            lab = stack.enter_context(Lab(log=lambda *a, **k: None))
            for k, image in enumerate(opts.image):
                cmd = shlex.split(opts.command_in_image) if opts.command_in_image else None
                ctr = lab.start_server(image, cmd, opts.port, name=f"bench-{k}")
                servers.append(Server(image, DockerTarget(ctr.name, ctr.address, ctr.port), udp=opts.udp))
        except DockerEnvError as e:
            raise BenchError(str(e).splitlines()[0]) from e
    if len(servers) == int(opts.baseline):  # nothing named but the yardstick
        raise BenchError("say which servers to measure: --builtin NAME|all, --command CMD, --target HOST:PORT")
    seen: dict[str, int] = {}
    for s in servers:  # two servers of one name stay apart in the table and bench.json
        seen[s.label] = seen.get(s.label, 0) + 1
        if seen[s.label] > 1:
            s.label = f"{s.label}#{seen[s.label]}"
    return servers


def machine() -> dict[str, Any]:
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "cpu_model": _cpu_model(), "python": platform.python_version()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(opts: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """The whole run: the ceiling, then every mode on every server, one server at a time (two
    servers measured at once would share the cores). Returns bench.json's document."""
    modes = opts.mode or DEFAULT_MODES
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise BenchError(f"unknown mode(s) {unknown}; known: {list(MODES)}")
    echo_bench()
    with contextlib.ExitStack() as stack:
        return _measure(opts, modes, start_servers(opts, stack), progress)


def _measure(opts: argparse.Namespace, modes: list[str], servers: list[Server],
             progress: Callable[[str], None]) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema": SCHEMA, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "machine": machine(), "settings": {"seconds": opts.seconds, "repeat": opts.repeat,
                                                              "hold": opts.hold, "modes": modes},
                           "servers": [], "status": 0}
    try:
        progress("ceiling")
        doc["ceiling"] = ceiling(opts.seconds, opts.repeat)
        for srv in servers:
            if isinstance(srv.target, OwnedServer):
                srv.target.start()
            entry: dict[str, Any] = {"name": srv.label, "observed": srv.pid is not None, "modes": {}}
            if srv.pid:
                entry["idle_rss_kib"] = proc_stat(srv.pid)["rss"] >> 10
            for mode in modes:
                progress(f"{srv.label} {mode}")
                res = run_mode(srv, mode, opts)
                entry["modes"][mode] = _mode_doc(mode, res)
                if res.wrong:
                    doc["status"] = 1
            if isinstance(srv.target, OwnedServer):
                death = srv.target.death()
                if death:
                    entry["died"] = death
                    doc["status"] = 1
                srv.target.stop()
            doc["servers"].append(entry)
            progress("")
    finally:
        for srv in servers:
            srv.target.stop()
    _ratios(doc)
    return doc


def _mode_doc(mode: str, res: Outcome) -> dict[str, Any]:
    d: dict[str, Any] = {"unit": MODES[mode].unit, "runs": res.runs}
    if res.wrong:
        d["wrong"] = res.wrong
    if res.unavailable:
        d["unavailable"] = res.unavailable
    if res.runs:
        keys = sorted({k for r in res.runs for k in r})
        d["median"] = {k: res.median(k) for k in keys}
        d["value"] = d["median"].get(MODES[mode].headline)
    if mode == "hold" and res.runs:
        r = res.runs[0]
        rss = r.get("server_rss_kib", -1)
        if rss > 0 and res.rss_before_kib is not None:
            d["rss_before_kib"] = res.rss_before_kib
            d["per_connection_kib"] = round((rss - res.rss_before_kib) / r["conns"], 2)
        d["samples"] = res.samples
    return d


def _ratios(doc: dict[str, Any]) -> None:
    """Each headline figure over the ceiling (the byte streams only: a connection rate has no
    one-way equivalent) and over the first server's."""
    ceil = doc["ceiling"]["MiB_per_second"]
    first = doc["servers"][0]["modes"] if doc["servers"] else {}
    for s in doc["servers"]:
        for mode, d in s["modes"].items():
            v = d.get("value")
            if v is None:
                continue
            if MODES[mode].unit == "MiB/s" and ceil:
                d["to_ceiling"] = round(v / ceil, 3)
            base = first.get(mode, {}).get("value")
            if base:
                d["to_first"] = round(v / base, 3)


def add_parser(sub: Any) -> None:
    b = sub.add_parser("bench", help="measure servers side by side (throughput, latency, connection rate, memory)")
    b.add_argument("--builtin", action="append", default=[], metavar="NAME",
                   help="a reference server (repeatable), or `all`")
    b.add_argument("--command", action="append", default=[], metavar="CMD",
                   help='a server command with {port} (repeatable), e.g. "./srv --port {port}"')
    b.add_argument("--target", action="append", default=[], metavar="HOST:PORT",
                   help="a server already running (repeatable; no memory figures)")
    b.add_argument("--baseline", action="store_true",
                   help="measure echo-baseline (a minimal epoll echo, tools/echo-baseline.c) first: every "
                        "'to first' ratio is then to it")
    b.add_argument("--image", action="append", default=[], metavar="IMAGE",
                   help="a server image (repeatable): run in Docker on an internal network; memory figures "
                        "from its container's process")
    b.add_argument("--port", type=int, default=7, help="the port the image's server listens on (default 7)")
    b.add_argument("--command-in-image", metavar="CMD", help="command to run in the image instead of its own")
    b.add_argument("--udp", action="store_true",
                   help="--command, --target and --image servers serve UDP echo too")
    b.add_argument("--mode", action="append", choices=list(MODES), metavar="MODE",
                   help=f"repeatable; default all: {', '.join(DEFAULT_MODES)}")
    b.add_argument("--seconds", type=float, default=2.0, help="length of each run (default 2)")
    b.add_argument("--repeat", type=int, default=3, help="runs per mode; the median is kept (default 3)")
    b.add_argument("--hold", type=int, default=10000, metavar="N", help="idle connections of the hold mode (default 10000)")
    b.add_argument("--out", default="bench-out", metavar="DIR",
                   help="where bench.json, the plots and bench.html go (default ./bench-out)")
    b.add_argument("--no-plots", action="store_true", help="bench.json and the table only")


def room_for_descriptors(want: int) -> None:
    """RLIMIT_NOFILE of at least `want` in this process and the processes it starts (they
    inherit it): the soft limit raised, and the hard one too where it is lower, as root."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(opts: argparse.Namespace) -> int:
    from . import benchout

    if opts.seconds <= 0 or opts.seconds > 60 or opts.repeat < 1 or opts.hold < 1:
        print("echoconf bench: --seconds in (0, 60], --repeat >= 1, --hold >= 1", file=sys.stderr)
        return 2
    room_for_descriptors(opts.hold + 256)  # the hold's connections, and the rest of the run
    try:
        with benchout.Progress() as prog:
            doc = measure(opts, prog.say)
    except (BenchError, HarnessError, registry.RegistryError) as e:
        print(f"echoconf bench: {e}", file=sys.stderr)
        return 2
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    benchout.table(doc)
    files = [out / "bench.json"]
    if not opts.no_plots:
        try:
            files += benchout.plots(doc, out)
        except ImportError:
            print("echoconf bench: no plots: matplotlib is not installed (Debian: apt-get install "
                  "python3-matplotlib; pip: echoconf[bench])", file=sys.stderr)
        files.append(benchout.html(doc, out, files))
    print("wrote " + ", ".join(str(f) for f in files))
    return int(doc["status"])
