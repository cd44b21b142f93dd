"""echo-bench (tools/echo-bench/): every mode passes on a correct server, and a wrong byte, a cut
datagram or an unserved connection fails it, so that a fast-but-wrong server never wins a figure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Iterator

import pytest

from echoconf import registry
from echoconf.bench import room_for_descriptors
from echoconf.target import free_port

BENCH = registry.find_binary("echo-bench")
pytestmark = [pytest.mark.skipif(BENCH is None, reason=f"echo-bench not built: {registry.BUILD_HINT}"),
              pytest.mark.timeout(120)]


def _served(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


def _announced(proc: subprocess.Popen[bytes]) -> None:
    """A UDP-only server takes no connection to prove it is up: its ready line says it."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(b"listening"):
        raise RuntimeError(f"the server said {line!r} instead of 'listening' (status {proc.poll()})")


def _room_for_connections() -> None:
    """In the server's process: descriptors for the 1500 connections of the hold below (the
    hard limit too where it is lower and this runs as root, as echo-bench does)."""
    room_for_descriptors(4096)


@pytest.fixture
def server() -> Iterator[Callable[..., tuple[int, int]]]:
    """Starts a built server on a free port: (port, pid). Stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str, udp_only: bool = False) -> tuple[int, int]:
        path = registry.find_binary(name)
        if path is None:
            pytest.skip(f"{name} not built: {registry.BUILD_HINT}")
        port = free_port()
        proc = subprocess.Popen([str(path), "--port", str(port), *args],
                                stdout=subprocess.PIPE if udp_only else subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=_room_for_connections)
        procs.append(proc)
        if udp_only:
            _announced(proc)
        else:
            _served(port, proc)
        return port, proc.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


def bench(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert BENCH is not None
    return subprocess.run([str(BENCH), "--port", str(port), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [
    ["--mode", "stream", "--conns", "4", "--seconds", "0.3"],
    ["--mode", "pingpong", "--seconds", "0.3"],
    ["--mode", "connrate", "--seconds", "0.3"],
    ["--mode", "connrate-rst", "--seconds", "0.3"],
    # More connections than the default descriptor limit: echo-bench raises its own.
    ["--mode", "hold", "--conns", "1500", "--seconds", "0.1"],
], ids=["stream", "pingpong", "connrate", "connrate-rst", "hold"])
def test_every_mode_passes_on_a_correct_server(server: Callable[..., tuple[int, int]], args: list[str]) -> None:
    port, pid = server("echo-epoll", "--max-conns", "2000")
    p = bench(port, *args, "--pid", str(pid))
    assert p.returncode == 0, p.stdout + p.stderr
    *samples, result = p.stdout.strip().splitlines()
    assert result.startswith(args[1] + " ") and result.endswith(" ok"), p.stdout
    if args[1] == "hold":
        assert "server_rss_kib=-1" not in p.stdout, p.stdout
        # The server's memory as the connections were added: twenty steps and the end.
        conns = [int(line.split()[1].removeprefix("conns=")) for line in samples]
        assert all(line.startswith("sample ") for line in samples), p.stdout
        assert conns == list(range(0, 1500, 75)) + [1500], p.stdout
    else:
        assert samples == [], p.stdout


def test_stream_fails_on_a_server_that_crosses_clients(server: Callable[..., tuple[int, int]]) -> None:
    port, _ = server("broken-cross-talk")
    p = bench(port, "--mode", "stream", "--conns", "4", "--seconds", "0.5")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "wrong bytes" in p.stderr


def test_hold_fails_on_a_connection_that_is_not_served(server: Callable[..., tuple[int, int]]) -> None:
    """echo-select refuses descriptors past FD_SETSIZE: the hold names the first one refused."""
    port, _ = server("echo-select")
    p = bench(port, "--mode", "hold", "--conns", "1100", "--seconds", "0.1")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "not served" in p.stderr


def test_connrate_fails_on_a_server_that_loses_a_byte(server: Callable[..., tuple[int, int]]) -> None:
    """broken-nul-truncation drops what follows a NUL byte: the first connection's byte is 0."""
    port, _ = server("broken-nul-truncation")
    p = bench(port, "--mode", "connrate", "--seconds", "0.3")
    assert p.returncode == 1, p.stdout + p.stderr


def test_bad_use_exits_2() -> None:
    assert BENCH is not None
    p = subprocess.run([str(BENCH), "--port", "7", "--mode", "nonsense"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "usage" in p.stderr


def figures(p: subprocess.CompletedProcess[str]) -> dict[str, float]:
    """The key=value figures of a passing run's result line (`MODE key=value ... ok`)."""
    assert p.returncode == 0, p.stdout + p.stderr
    line = p.stdout.strip().splitlines()[-1]
    assert line.endswith(" ok"), line
    return {k: float(v) for k, v in (pair.split("=", 1) for pair in line.split()[1:-1])}


LATENCY = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]


def assert_latency(f: dict[str, float]) -> None:
    values = [f[k] for k in LATENCY]
    assert 0 < values[0] and values == sorted(values), f


@pytest.mark.parametrize("size", ["64", "1000"])
def test_pingpong_measures_every_round_trip(server: Callable[..., tuple[int, int]], size: str) -> None:
    """Round trips are counted as messages, whatever their size: each is a latency sample."""
    port, _ = server("echo-epoll")
    f = figures(bench(port, "--mode", "pingpong", "--size", size, "--seconds", "0.5"))
    assert f["size"] == int(size) and f["samples"] > 0 and f["samples"] == f["round_trips"], f
    assert_latency(f)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_oneway_measures_the_loopback_without_a_server(host: str) -> None:
    if host == "::1":
        try:
            socket.socket(socket.AF_INET6, socket.SOCK_STREAM).bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
    assert BENCH is not None
    p = subprocess.run([str(BENCH), "--mode", "oneway", "--host", host, "--conns", "2", "--seconds", "0.5"],
                       capture_output=True, text=True, timeout=30)
    f = figures(p)
    assert f["conns"] == 2 and f["bytes"] > 0 and f["MiB_per_second"] > 0, f


def test_oneway_fails_when_its_sink_dies() -> None:
    """The sink is echo-bench's child: killed, its count never comes, and that is a failure (the
    child is reaped: echo-bench ends with no child left)."""
    assert BENCH is not None
    proc = subprocess.Popen([str(BENCH), "--mode", "oneway", "--seconds", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    children = f"/proc/{proc.pid}/task/{proc.pid}/children"
    deadline = time.monotonic() + 5
    kids: list[str] = []
    while not kids and time.monotonic() < deadline:
        time.sleep(0.05)
        with open(children) as f:
            kids = f.read().split()
    assert len(kids) == 1, kids
    time.sleep(0.2)
    os.kill(int(kids[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    assert "echo-bench: oneway:" in err and " ok" not in out


def test_udp_passes_on_a_correct_server(server: Callable[..., tuple[int, int]]) -> None:
    port, _ = server("echo-epoll")
    f = figures(bench(port, "--mode", "udp", "--conns", "2", "--size", "2000", "--seconds", "0.5"))
    assert f["round_trips"] > 0 and f["lost"] == 0 and f["late"] == 0, f
    assert_latency(f)


def test_udp_fails_on_a_server_that_cuts_datagrams(server: Callable[..., tuple[int, int]]) -> None:
    """broken-udp-truncate reads into 1024 bytes: 1000-byte datagrams come back whole, 2000-byte
    ones cut."""
    port, _ = server("broken-udp-truncate", udp_only=True)
    figures(bench(port, "--mode", "udp", "--size", "1000", "--seconds", "0.5"))
    p = bench(port, "--mode", "udp", "--size", "2000", "--seconds", "0.5")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "wrong answer: 1024 bytes to a datagram of 2000" in p.stderr


def test_udp_counts_a_lost_try_and_a_late_copy() -> None:
    """A server that answers every datagram twice but drops the second one: the second copy of
    the first answer is known by its sequence number for a late answer, not taken for a wrong
    answer to the next datagram, and the second datagram is sent again after 1 s (lost=1)."""
    assert BENCH is not None
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.1)
    stop = threading.Event()

    def doubling_echo() -> None:
        seen = 0
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(65536)
            except TimeoutError:
                continue
            seen += 1
            if seen == 2:
                continue
            srv.sendto(data, peer)
            srv.sendto(data, peer)

    t = threading.Thread(target=doubling_echo, daemon=True)
    t.start()
    try:
        f = figures(bench(srv.getsockname()[1], "--mode", "udp", "--seconds", "0.5"))
    finally:
        stop.set()
        t.join()
        srv.close()
    assert f["lost"] == 1 and f["late"] >= 1 and f["round_trips"] > 0, f


def test_udp_fails_when_nothing_answers() -> None:
    """A port that takes datagrams and never answers: 3 tries, 1 s apart, then 'no answer'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        started = time.monotonic()
        p = bench(mute.getsockname()[1], "--mode", "udp", "--seconds", "0.5")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "no answer" in p.stderr
    assert time.monotonic() - started < 0.5 + 10


@pytest.mark.parametrize("args", [
    ["--mode", "pingpong", "--size", "0"],
    ["--mode", "pingpong", "--size", "65537"],
    ["--mode", "udp", "--size", "65508"],
    ["--mode", "udp", "--size", "12x"],
    ["--mode", "stream", "--size", "64"],  # a size the mode would not use
    ["--mode", "udp", "--port"],  # every mode but oneway needs --port
])
def test_a_bad_size_or_no_port_exits_2(args: list[str]) -> None:
    assert BENCH is not None
    args = [a for a in args if a != "--port"] if args[-1] == "--port" else ["--port", "7", *args]
    p = subprocess.run([str(BENCH), *args], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "usage" in p.stderr, p.stdout + p.stderr
