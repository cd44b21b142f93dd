"""Deadlines for remote and slow servers: the run's time scale.

The cases' deadlines only bound hangs, and they assume a path like loopback or a LAN: a
correct server finishes long before them. Behind a slow link a correct server would miss
them and fail with "timeout", which reads like a server bug. So every wait that bounds
network work is multiplied by one factor, client.TIME_SCALE (client Deadlines, connect
timeouts, stall detection, and each case's pytest-timeout bound); CPU measuring windows and
the waits that are a case's point (pauses, idle times) are not.

The factor is `--time-scale F` when given (F >= 1). Otherwise, for a `--target` that is not
on loopback, the path is measured first: the RTT of a small echo and the echo throughput of
a few MiB, a bounded probe of at most a few seconds; the factor is how far the path falls
short of what the deadlines assume (ASSUMED_RTT, ASSUMED_THROUGHPUT). An owned server or a
loopback target runs at 1, unmeasured: local runs are unchanged.
"""

from __future__ import annotations

import math
import selectors
import socket
import statistics
import time
from typing import TYPE_CHECKING, Any

import pytest

from . import client
from .target import HarnessError, RemoteTarget

if TYPE_CHECKING:
    from .plugin import EchoconfRun

MiB = 1 << 20

# What the fixed deadlines assume of the path, each with a margin of about 2 over the case
# that needs it most:
# - RTT: partial.slow-reader echoes 8 MiB through a 4 KiB receive window (SO_RCVBUF 4 KiB:
#   about 2.7 KiB in flight per round trip), some 3000 round trips within 20 s, so at most
#   6.5 ms each (measured: 1.1 MiB in 20 s at 50 ms RTT). Assumed: 3 ms.
# - Echo throughput: echo.large streams 64 MiB within 20 s, 3.2 MiB/s (partial.many-interleaved
#   12.5 MiB within 10 s). Assumed: 6.4 MiB/s.
ASSUMED_RTT = 0.003
ASSUMED_THROUGHPUT = 6.4 * MiB
MAX_SCALE = 100.0  # a measured scale is capped: beyond it, say --time-scale F explicitly

# The probe: bounded, a few seconds at most even against a server that echoes nothing.
CONNECT_TIMEOUT = 3.0
RTT_SAMPLES = 5
RTT_BUDGET = 2.0
PROBE_BYTES = 4 * MiB
THROUGHPUT_BUDGET = 3.0
DRAIN = 2.0


class ProbeError(RuntimeError):
    pass


def parse_scale(value: Any) -> float:
    """--time-scale F: a finite number >= 1 (a UsageError otherwise)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    if not math.isfinite(f) or f < 1:
        raise pytest.UsageError(f"--time-scale wants a number >= 1 (it multiplies network "
                                f"deadlines), got {value!r}")
    return f


def parse_hostport(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise pytest.UsageError(f"{option} wants HOST:PORT ([ADDR]:PORT for IPv6), got {text!r}")
    return host.strip("[]"), int(port)


def measure(addr: client.Addr, factory: client.SocketFactory | None = None) -> dict[str, Any]:
    """Probe the path to an echo server: connect time, the median RTT of RTT_SAMPLES small
    echoes, and the echo throughput of up to PROBE_BYTES within THROUGHPUT_BUDGET seconds
    (bytes echoed / time to the last echoed byte). Raises ProbeError when it cannot tell."""
    assert client.TIME_SCALE == 1.0  # the probe's own bounds are absolute
    t0 = time.monotonic()
    try:
        sock = client.connect(addr, CONNECT_TIMEOUT, nodelay=True, factory=factory)
    except OSError as e:
        raise ProbeError(f"could not connect: {e}") from e
    connect_s = time.monotonic() - t0
    try:
        rtts = []
        end = time.monotonic() + RTT_BUDGET
        for i in range(RTT_SAMPLES):
            msg = b"<echoconf-rtt-%d>" % i
            t = time.monotonic()
            got = b""
            try:
                sock.settimeout(max(0.001, end - t))
                sock.sendall(msg)
                while len(got) < len(msg):
                    sock.settimeout(max(0.001, end - time.monotonic()))
                    chunk = sock.recv(len(msg) - len(got))
                    if not chunk:
                        raise ProbeError("the server closed the connection during the RTT probe")
                    got += chunk
            except OSError as e:
                raise ProbeError(f"no echo of a {len(msg)}-byte message within {RTT_BUDGET:g} s "
                                 f"({e or type(e).__name__})") from e
            rtts.append(time.monotonic() - t)
        received, seconds = _stream(sock, PROBE_BYTES, THROUGHPUT_BUDGET)
    finally:
        client.finish(sock, DRAIN)
    if received == 0 or seconds <= 0:
        raise ProbeError(f"nothing of a {PROBE_BYTES >> 20} MiB echo came back within "
                         f"{THROUGHPUT_BUDGET:g} s")
    return {"connect_ms": round(connect_s * 1000, 2), "rtt_ms": round(statistics.median(rtts) * 1000, 2),
            "rtt_samples_ms": [round(r * 1000, 2) for r in rtts],
            "throughput_mib_s": round(received / seconds / MiB, 3), "probe_bytes": received,
            "probe_seconds": round(seconds, 3)}


def _stream(sock: socket.socket, n: int, budget: float) -> tuple[int, float]:
    """Send n bytes while reading the echo; return (bytes echoed, seconds to the last one)."""
    block = bytes(range(256)) * 256  # 64 KiB
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent = received = 0
    start = last = time.monotonic()
    end = start + budget
    try:
        while received < n:
            now = time.monotonic()
            if now >= end:
                break
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if sent < n else 0)
            sel.modify(sock, want)
            for _, mask in sel.select(end - now):
                if mask & selectors.EVENT_WRITE and sent < n:
                    try:
                        sent += sock.send(block[: min(len(block), n - sent)])
                    except BlockingIOError:
                        pass
                    except OSError:
                        return received, last - start
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    except OSError:
                        return received, last - start
                    if not chunk:
                        return received, last - start
                    received += len(chunk)
                    last = time.monotonic()
    finally:
        sel.close()
        sock.setblocking(True)
    return received, last - start


def derive(rtt_ms: float, throughput_mib_s: float) -> dict[str, Any]:
    """The scale from how far the path falls short of ASSUMED_RTT and ASSUMED_THROUGHPUT
    (rounded up to a tenth, at least 1, at most MAX_SCALE)."""
    f_rtt = rtt_ms / 1000 / ASSUMED_RTT
    f_tp = ASSUMED_THROUGHPUT / MiB / throughput_mib_s if throughput_mib_s > 0 else math.inf
    raw = max(1.0, f_rtt, f_tp)
    value = min(MAX_SCALE, math.ceil(round(raw * 10, 6)) / 10)
    return {"value": value, "factors": {"rtt": round(f_rtt, 2), "throughput": round(f_tp, 2)},
            "capped": raw > MAX_SCALE}


def setup(run: "EchoconfRun", opt: Any) -> dict[str, Any]:
    """Decide the run's time scale (given, measured or 1), set client.TIME_SCALE, scale the
    cases' pytest-timeout bounds, print one line when it is not 1; returns what report.json
    records as `time_scale`. Also attaches --ipv6-target to the --target."""
    remote = getattr(run, "remote", None)
    if not isinstance(remote, RemoteTarget):
        remote = None  # the harness runs the server (a process, or a container it watches)
    given = opt.echoconf_time_scale
    if given is not None:
        given = parse_scale(given)
    if opt.echoconf_ipv6_target:
        if remote is None:
            raise pytest.UsageError("--ipv6-target goes with --target (a server the harness only "
                                    "connects to): it says where robust.ipv6 reaches it over IPv6")
        host, port = parse_hostport(opt.echoconf_ipv6_target, "--ipv6-target")
        if client.literal_family(host) == socket.AF_INET:
            raise pytest.UsageError(f"--ipv6-target wants an IPv6 address or a name, got the IPv4 "
                                    f"address {host}")
        remote.ipv6_target = (host, port)
    client.TIME_SCALE = 1.0
    line = None
    if given is not None:
        info: dict[str, Any] = {"value": given, "source": "given"}
        line = f"time scale {given:g} (--time-scale): every network deadline is {given:g} times longer"
    elif remote is None or run.list_only:
        info = {"value": 1.0, "source": "default",
                "reason": "the harness runs the server" if remote is None else "listing only"}
    else:
        info = _measured(remote)
        line = info.pop("line")
    if line is not None and not run.list_only:
        with run.terminal():
            print(line, flush=True)
    client.TIME_SCALE = info["value"]
    if info["value"] != 1.0:
        run.config.pluginmanager.register(_TimeoutScaler(info["value"]), "echoconf-time-scale")
    return info


def _measured(remote: RemoteTarget) -> dict[str, Any]:
    try:
        addresses = remote.resolve()
        loopback = remote.is_loopback()
    except HarnessError as e:
        # ensure_running says so again, as a harness error, before the first case.
        return {"value": 1.0, "source": "default", "reason": str(e),
                "line": f"time scale 1: {e}"}
    if loopback:
        return {"value": 1.0, "source": "default", "reason": "loopback target", "line": None}
    info: dict[str, Any] = {"source": "measured", "addresses": addresses,
                            "assumed": {"rtt_ms": ASSUMED_RTT * 1000,
                                        "throughput_mib_s": ASSUMED_THROUGHPUT / MiB}}
    try:
        figures = measure(remote.addr, remote.factory())
    except ProbeError as e:
        info.update(value=1.0, error=str(e))
        info["line"] = (f"time scale 1: could not measure the path to {remote.name} ({e}); "
                        "deadlines are not scaled (say --time-scale F for a slow link)")
        return info
    info.update(figures)
    info.update(derive(figures["rtt_ms"], figures["throughput_mib_s"]))
    info["line"] = (f"path to {remote.name} measured: RTT {figures['rtt_ms']:.1f} ms, echo throughput "
                    f"{figures['throughput_mib_s']:.2f} MiB/s -> time scale {info['value']:g} "
                    f"(deadlines assume RTT <= {ASSUMED_RTT * 1000:g} ms and >= "
                    f"{ASSUMED_THROUGHPUT / MiB:g} MiB/s"
                    + ("; capped, say --time-scale F" if info["capped"] else "") + ")")
    return info


class _TimeoutScaler:
    """Multiplies each case's pytest-timeout bound (`case(timeout=…)`) by the time scale."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            m = item.get_closest_marker("timeout")
            if m is None:
                continue
            args = list(m.args)
            kwargs = dict(m.kwargs)
            if args and isinstance(args[0], (int, float)):
                args[0] = args[0] * self.scale
            elif isinstance(kwargs.get("timeout"), (int, float)):
                kwargs["timeout"] = kwargs["timeout"] * self.scale
            else:
                continue
            # The closest marker wins: pytest-timeout reads item.get_closest_marker("timeout").
            item.add_marker(pytest.mark.timeout(*args, **kwargs), append=False)
