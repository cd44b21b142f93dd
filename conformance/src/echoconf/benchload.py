"""One mode of `echoconf bench` on one server: what echo-bench is asked, its result line read,
the median kept over the runs; and the loopback ceiling. The host's limits that would make a
figure the host's rather than the server's (a full connection-tracking table) are checked here,
and such a figure is refused with the reason."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .target import HarnessError, Target, free_port, proc_stat


@dataclass(frozen=True)
class Mode:
    args: tuple[str, ...]  # what echo-bench is asked
    headline: str  # the key of its result line that ratios are taken of (higher is better)
    unit: str


# Every mode, in the order the table and bench.json give them.
MODES: dict[str, Mode] = {
    "stream": Mode(("--mode", "stream"), "MiB_per_second", "MiB/s"),
    "stream8": Mode(("--mode", "stream", "--conns", "8"), "MiB_per_second", "MiB/s"),
    "pingpong": Mode(("--mode", "pingpong"), "per_second", "rt/s"),
    "connrate": Mode(("--mode", "connrate"), "per_second", "conn/s"),
    "connrate-rst": Mode(("--mode", "connrate-rst"), "per_second", "conn/s"),
    "udp": Mode(("--mode", "udp"), "per_second", "rt/s"),
    "hold": Mode(("--mode", "hold"), "per_second", "conn/s"),
}
DEFAULT_MODES = list(MODES)
CONNRATE_SECONDS = 0.5  # the longest run of the connection-rate modes


class BenchError(RuntimeError):
    """The bench cannot run as asked (exit 2)."""


@dataclass
class Server:
    """One server of the run: how it is reached, and its process when the bench owns it."""

    label: str
    target: Target
    udp: bool = False  # serves UDP echo too: the udp mode runs
    concurrent: bool = True  # serves clients at once: the modes of several connections run

    @property
    def pid(self) -> int | None:
        """The server's main process as this host sees it (a process the bench started, or a
        container's), None for a server it only reaches."""
        if not self.target.observable:
            return None
        try:
            return self.target.pid
        except HarnessError:
            return None


@dataclass
class Outcome:
    """A mode's runs on one server: the median of the headline figure, every run's figures,
    and why there is no figure (`unavailable`) or why the server failed (`wrong`)."""

    runs: list[dict[str, float]] = field(default_factory=list)
    unavailable: str | None = None
    wrong: str | None = None
    samples: list[tuple[int, int]] = field(default_factory=list)  # hold: (connections, RSS KiB), echo-bench's
    rss_before_kib: int | None = None  # hold: the server's RSS just before it

    def median(self, key: str) -> float | None:
        vals = [r[key] for r in self.runs if key in r]
        return statistics.median(vals) if vals else None


def echo_bench() -> Path:
    found = registry.find_binary("echo-bench")
    if found is None:
        raise BenchError(f"echo-bench not found; {registry.BUILD_HINT}")
    return found


LINE = re.compile(r"^(\S+)((?:\s+\w+=\S+)*)\s+ok$")


def parse(stdout: str) -> dict[str, float]:
    """The figures of echo-bench's result line (`MODE key=value ... ok`)."""
    for line in reversed(stdout.strip().splitlines()):
        m = LINE.match(line.strip())
        if m:
            out: dict[str, float] = {}
            for pair in m.group(2).split():
                k, v = pair.split("=", 1)
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
            return out
    raise ValueError(f"no result line in {stdout[-300:]!r}")


SAMPLE = re.compile(r"^sample conns=(\d+) server_rss_kib=(-?\d+)$", re.M)


def run_load(args: list[str], timeout: float) -> tuple[dict[str, float] | None, str, str]:
    """One echo-bench run: its figures, or None and why (its last words); and its output."""
    try:
        p = subprocess.run([str(echo_bench()), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"echo-bench did not finish within {timeout:g} s", ""
    if p.returncode == 0:
        try:
            return parse(p.stdout), "", p.stdout
        except ValueError as e:
            return None, str(e), p.stdout
    last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return None, last.removeprefix("echo-bench: "), p.stdout


def is_wrong(why: str) -> bool:
    """echo-bench's words for bytes that came back wrong (not a refusal or a limit)."""
    return "wrong" in why or "differ" in why


def ceiling(seconds: float, runs: int) -> dict[str, Any]:
    """The one-way loopback stream the echoes are measured against: iperf3 when present (what
    network people quote), else echo-bench's own sink. Median of `runs`."""
    figures = []
    how = "echo-bench --mode oneway"
    for _ in range(runs):
        if shutil.which("iperf3"):
            how = "iperf3 -c 127.0.0.1 (one stream)"
            got = _iperf3(seconds)
        else:
            got, why, _ = run_load(["--mode", "oneway", "--seconds", str(seconds)], seconds + 20)
            got = got.get("MiB_per_second") if got else None
        if got:
            figures.append(got)
    if not figures:
        raise BenchError("could not measure the loopback ceiling (iperf3 and echo-bench --mode oneway failed)")
    return {"how": how, "MiB_per_second": statistics.median(figures), "runs": figures}


def _iperf3(seconds: float) -> float | None:
    """MiB/s of one iperf3 stream over loopback. Its server takes one client (-1), so readiness
    is the client connecting, tried again while the server is not yet listening."""
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            p = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(max(1, round(seconds))),
                                "-J"], capture_output=True, text=True, timeout=seconds + 20)
            doc = json.loads(p.stdout)
            if "error" not in doc:
                return doc["end"]["sum_received"]["bits_per_second"] / 8 / (1 << 20)
            if "connect" not in doc["error"] or time.monotonic() > deadline or srv.poll() is not None:
                return None
            time.sleep(0.05)
    except (subprocess.TimeoutExpired, ValueError, KeyError):
        return None
    finally:
        srv.kill()
        srv.wait()


def run_mode(srv: Server, mode: str, opts: argparse.Namespace) -> Outcome:
    if mode == "udp" and not srv.udp:
        return Outcome(unavailable="does not serve UDP")
    if not srv.concurrent and ("--conns" in MODES[mode].args or mode == "hold"):
        return Outcome(unavailable="one client at a time")
    host, port = srv.target.addr
    base = [*MODES[mode].args, "--host", host, "--port", str(port)]
    out = Outcome()
    if mode == "hold":
        # Held for a second, then each connection must echo again; RSS from the bench itself.
        args = base + ["--conns", str(opts.hold), "--seconds", "1"]
        if srv.pid:
            args += ["--pid", str(srv.pid)]
        repeats = 1  # establishing 10k connections is its own long measurement
    elif mode.startswith("connrate"):
        # Where a Docker engine runs, the host tracks every loopback connection and keeps a
        # closed one 120 s: half a second of connections (thousands, a steady rate) leaves
        # room for the other servers' runs.
        args = base + ["--seconds", str(min(opts.seconds, CONNRATE_SECONDS))]
        repeats = opts.repeat
    else:
        args = base + ["--seconds", str(opts.seconds)]
        repeats = opts.repeat
    # At most about 30k connections a second over loopback.
    needed = opts.hold if mode == "hold" else int(30000 * CONNRATE_SECONDS) if mode.startswith("connrate") else 0
    for _ in range(repeats):
        full = conntrack_room(needed) if needed else None
        if full:
            out.unavailable = full
            return out
        if mode == "hold" and srv.pid:
            out.rss_before_kib = proc_stat(srv.pid)["rss"] >> 10
        # A hold's connections are established one after another, and a server that scans
        # every descriptor per wakeup (poll, select) takes O(n²) for them: a minute for 10k.
        got, why, stdout = run_load(args, timeout=opts.hold / 100 + 60 if mode == "hold" else opts.seconds + 30)
        out.samples = [(int(c), int(k)) for c, k in SAMPLE.findall(stdout) if int(k) >= 0]
        if got is None:
            if is_wrong(why):
                out.wrong = why
            else:
                out.unavailable = why
            return out
        if got.get("slow_connects", 0) > 0:
            out.unavailable = (f"{got['slow_connects']:.0f} connections took over 0.5 s to connect: the host dropped "
                               "their first SYN (a full connection-tracking table does that; see dmesg), so the "
                               "figure would be the host's")
            return out
        out.runs.append(got)
    return out


def conntrack_room(needed: int, bound: float = 130.0) -> str | None:
    """None once the host's connection-tracking table (nf_conntrack, loaded where a Docker
    engine runs; it keeps a closed loopback connection 120 s) has room for `needed` more, else
    why not after waiting `bound` seconds for old entries to expire."""
    base = Path("/proc/sys/net/netfilter")
    until = time.monotonic() + bound
    while True:
        try:
            count = int((base / "nf_conntrack_count").read_text())
            limit = int((base / "nf_conntrack_max").read_text())
        except (OSError, ValueError):
            return None  # no connection tracking here
        if limit - count >= needed:
            return None
        if time.monotonic() > until:
            return (f"the host's connection-tracking table has room for {limit - count} connections, "
                    f"this mode needs about {needed}")
        time.sleep(1)


