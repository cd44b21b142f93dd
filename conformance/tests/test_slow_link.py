"""Remote and slow servers get true verdicts: the suite behind a 10 Mbit/s, 50 ms RTT link.

The link. Two network namespaces, one for the harness (client) and one for the server,
joined by two TUN devices and delay_relay.py, a userspace relay that writes every IP packet
read from one TUN into the other 25 ms later (both directions: 50 ms RTT). Each TUN device
has a `tbf` qdisc at 10 Mbit/s (burst 16 kB, 100 ms of queue), so each direction is a real
10 Mbit/s bottleneck with a queue, and TCP runs end to end (no proxy: half-close, RST, windows
and short writes behave as on a real path). Why not `netem`: this kernel has no sch_netem
(`tc qdisc add … netem` says "Specified qdisc kind is unknown", no modprobe); tbf works, and
the delay is the only part userspace must add. Nothing touches the root namespace's routes:
the TUN devices are created there only to be moved into the two namespaces.

The client namespace has its own /etc/hosts (`ip netns exec` bind-mounts
/etc/netns/NAME/hosts) in which `echo-slow` names both the server's IPv4 and IPv6 address,
so the correct server's run also proves name resolution to every address (report
`target.resolved`) and robust.ipv6 against the target's own IPv6 address.

Why these cases (--profile quick): the ones whose deadlines the link makes too short, and the
ones that catch broken-short-write there, and nothing slow for its own sake.
- partial.many-interleaved: 50 x 256 KiB both ways is about 11 s at 10 Mbit/s, over its
  fixed 10 s deadline: without the time scale a correct server fails it with "timeout". The
  test asserts it passed and took longer than 10 s: a false timeout avoided, not assumed.
- echo.large (16 MiB quick, ~15 s here), close.half-close-flush (up to 1 MiB),
  partial.burst-half-close, partial.one-byte-writes, close.half-close-eof, echo.basic and
  robust.ipv6: bulk, half-close and latency-bound behaviour across the link.
- Left out: partial.slow-reader moves 8 MiB through a 4 KiB receive window, ~3000 round trips:
  about 150 s at 50 ms RTT (measured: 1.1 MiB in its 20 s unscaled). It sets the RTT
  assumption the scale is derived from (pathscale.ASSUMED_RTT) but is too slow to run here.
  echo.sequential (500 connections, a few RTTs each) likewise; [owned] cases cannot run
  against a --target.
broken-short-write (4 KiB SO_SNDBUF, drops the tail of every short write) runs behind the
same link with `--hang-bound 1` (as the meta-test runs broken servers), its path measured too,
on partial.slow-reader, the case made for its bug: the client's 4 KiB receive window and its
held reads make the server's writes short on any path, so the verdict comes from the bytes
(the first skipped segment, a few KiB in), about 12 s. It must fail it. The half-close cases
that catch it on loopback (close.half-close-flush, partial.burst-half-close) are no proof here:
they leave the client's window to grow, and one send may queue up to half the peer's largest
window in a single segment whatever SO_SNDBUF says (the kernel's GSO size goal), so whether
its writes come back short at all depends on how that window grew: once in a loaded run it
passed partial.burst-half-close behind this link. The held reads also prove that a reader
holding back on purpose does not count against the hang bound (1 s here, against a hold of
0.1 s times the time scale, ~1.7 s).

Needs root, /dev/net/tun, iproute2 (ip, tc with tbf) and the built servers; skipped otherwise.
Takes about 55 s (measured: 38 s for the correct server, 17 s for the broken one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ECHOCONF, REPO, load_report, outcomes

from echoconf.netns import NetNS, NetnsUnavailable
from echoconf.registry import find_binary

RELAY = Path(__file__).resolve().parent / "delay_relay.py"
RATE = "10mbit"
ONE_WAY_DELAY_MS = 25
CLIENT_V4, SERVER_V4 = "10.77.0.1", "10.77.0.2"
CLIENT_V6, SERVER_V6 = "fd77::1", "fd77::2"
NAME = "echo-slow"

CORRECT_CASES = ["echo.basic", "echo.large", "partial.one-byte-writes", "partial.burst-half-close",
                 "partial.many-interleaved", "close.half-close-flush", "close.half-close-eof",
                 "robust.ipv6"]
BROKEN_CASES = ["partial.slow-reader"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices, tc)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2 (ip, tc)"
    for name in ("echo-epoll", "broken-short-write"):
        if find_binary(name) is None:
            return f"{name} is not built (cmake --workflow --preset release)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _sh(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {res.stderr.strip() or res.returncode}")


class SlowLink:
    def __init__(self, client: NetNS, server: NetNS) -> None:
        self.client, self.server = client, server

    @contextlib.contextmanager
    def serve(self, binary: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
        """A server in the server namespace, listening on [::]:port (dual-stack)."""
        path = find_binary(binary)
        assert path is not None
        proc = subprocess.Popen(self.server.wrap([str(path), "--host", "::", "--port", str(port)]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert line.startswith("listening"), f"{binary} did not start: {line!r}"
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def harness(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        """`echoconf run ARGS` in the client namespace (its /etc/hosts knows echo-slow)."""
        return subprocess.run(self.client.wrap([sys.executable, str(ECHOCONF), "run", *args]),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def slow_link() -> Iterator[SlowLink]:
    with contextlib.ExitStack() as stack:
        try:
            cns = stack.enter_context(NetNS())
            sns = stack.enter_context(NetNS())
        except NetnsUnavailable as e:
            pytest.skip(f"no network namespaces: {e}")
        tag = f"ecs{os.getpid() % 100000}"
        tun_c, tun_s = f"{tag}c", f"{tag}s"
        relay = subprocess.Popen([sys.executable, str(RELAY), tun_c, tun_s, "--delay-ms",
                                  str(ONE_WAY_DELAY_MS), "--lifetime", "300"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def stop_relay() -> None:
            relay.terminate()
            try:
                relay.wait(5)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait(5)
            for dev in (tun_c, tun_s):  # normally gone with the relay; never left behind
                subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=10)

        stack.callback(stop_relay)
        assert relay.stdout is not None
        ready = relay.stdout.readline().decode().strip()
        assert ready == "ready", f"delay relay did not start: {ready!r} {relay.stderr.read(2000)!r}"
        for dev, ns, mine, peer, mine6, peer6 in ((tun_c, cns, CLIENT_V4, SERVER_V4, CLIENT_V6, SERVER_V6),
                                                  (tun_s, sns, SERVER_V4, CLIENT_V4, SERVER_V6, CLIENT_V6)):
            _sh("ip", "link", "set", dev, "netns", ns.name)
            _sh("ip", "-n", ns.name, "addr", "add", mine, "peer", peer, "dev", dev)
            _sh("ip", "-n", ns.name, "-6", "addr", "add", mine6, "dev", dev, "nodad")
            _sh("ip", "-n", ns.name, "link", "set", dev, "up")
            _sh("ip", "-n", ns.name, "-6", "route", "add", f"{peer6}/128", "dev", dev)
            _sh("tc", "-n", ns.name, "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE,
                "burst", "16kb", "latency", "100ms")
        etc = Path("/etc/netns") / cns.name
        made_parent = not etc.parent.exists()
        etc.mkdir(parents=True)

        def drop_hosts() -> None:
            shutil.rmtree(etc, ignore_errors=True)
            if made_parent:
                with contextlib.suppress(OSError):
                    etc.parent.rmdir()

        stack.callback(drop_hosts)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n{SERVER_V4} {NAME}\n"
                                   f"{SERVER_V6} {NAME}\n")
        yield SlowLink(cns, sns)


def _case(doc: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in doc["cases"] if c["id"] == cid)


def _run_behind_link(slow_link: SlowLink, server: str, port: int, out: Path, target: str,
                     cases: list[str], *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """Serve `server` on `port` behind the link and run the named cases against it."""
    t0 = time.monotonic()
    with slow_link.serve(server, port):
        argv = ["--target", target, "--profile", "quick", "--capability", "ipv6",
                "--report", str(out), "--no-summary", *extra]
        for c in cases:
            argv += ["--case", c]
        p = slow_link.harness(*argv)
    return p, time.monotonic() - t0


def test_correct_server_passes_behind_slow_link(slow_link: SlowLink, tmp_path: Path) -> None:
    out = tmp_path / "epoll"
    p, took = _run_behind_link(slow_link, "echo-epoll", 7, out, f"{NAME}:7", CORRECT_CASES)
    text = p.stdout + p.stderr
    doc = load_report(out)
    assert p.returncode == 0, text
    assert outcomes(doc) == {c: "passed" for c in CORRECT_CASES}, text
    # The path was measured, said so in one line, and the scale follows from it.
    ts = doc["time_scale"]
    assert ts["source"] == "measured", ts
    assert 45 <= ts["rtt_ms"] <= 120, ts
    assert 0.5 <= ts["throughput_mib_s"] <= 1.25, ts
    assert ts["value"] >= 10, ts  # 50 ms against an assumed 3 ms
    assert f"path to {NAME}:7 measured: RTT" in p.stdout and f"time scale {ts['value']:g}" in p.stdout, text
    # The name resolved to both addresses; robust.ipv6 went to the target's own IPv6 address.
    assert sorted(doc["target"]["resolved"]) == sorted([SERVER_V4, SERVER_V6]), doc["target"]
    # Its fixed 10 s deadline would have failed this correct server with "timeout".
    assert _case(doc, "partial.many-interleaved")["duration"] > 10.0, _case(doc, "partial.many-interleaved")
    print(f"correct server: {took:.1f} s\n{p.stdout}")


def test_broken_short_write_still_caught_behind_slow_link(slow_link: SlowLink, tmp_path: Path) -> None:
    out = tmp_path / "short-write"
    p, took = _run_behind_link(slow_link, "broken-short-write", 8, out, f"{SERVER_V4}:8",
                               ["robust.ipv6", *BROKEN_CASES], "--hang-bound", "1",
                               "--ipv6-target", f"[{SERVER_V6}]:8")
    text = p.stdout + p.stderr
    doc = load_report(out)
    assert p.returncode == 1, text
    assert outcomes(doc) == {"robust.ipv6": "passed", **{c: "failed" for c in BROKEN_CASES}}, text
    assert doc["target"]["ipv6_target"] == f"[{SERVER_V6}]:8", doc["target"]
    assert doc["time_scale"]["source"] == "measured" and doc["time_scale"]["value"] > 1, doc["time_scale"]
    for c in BROKEN_CASES:  # (robust.ipv6 went to --ipv6-target: an IPv4 literal names no IPv6 host)
        detail = _case(doc, c)["detail"]
        # Lost bytes, shown by the stream itself: the echo skips data or ends short with FIN.
        assert detail["offset"] is not None and detail["offset"] < detail["sent"], (c, detail)
    print(f"broken-short-write: {took:.1f} s\n{p.stdout}")
