"""echo-bench (tools/echo-bench.c): every mode passes on a correct server, and a wrong byte or an
unserved connection fails it, so that a fast-but-wrong server never wins a figure."""

from __future__ import annotations

import resource
import socket
import subprocess
import time
from typing import Callable, Iterator

import pytest

from echoconf import registry
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


def _room_for_connections() -> None:
    """In the server's process: descriptors for the 1500 connections of the hold below (the
    hard limit too where it is lower and this runs as root, as echo-bench does)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.fixture
def server() -> Iterator[Callable[..., tuple[int, int]]]:
    """Starts a built server on a free port: (port, pid). Stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> tuple[int, int]:
        path = registry.find_binary(name)
        if path is None:
            pytest.skip(f"{name} not built: {registry.BUILD_HINT}")
        port = free_port()
        proc = subprocess.Popen([str(path), "--port", str(port), *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=_room_for_connections)
        procs.append(proc)
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
    assert p.stdout.startswith(args[1] + " ") and p.stdout.rstrip().endswith(" ok"), p.stdout
    if args[1] == "hold":
        assert "server_rss_kib=-1" not in p.stdout, p.stdout


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
