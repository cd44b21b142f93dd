"""The Docker fault checks grade the server's behaviour as a failure and keep `error` for the
engine's own failures. No engine is needed: the container is a stand-in."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

pytest.importorskip("docker")

import docker.errors  # noqa: E402

from echoconf import dockerenv as de  # noqa: E402
from echoconf import faults  # noqa: E402


@pytest.fixture
def echo_addr() -> Iterator[tuple[str, int]]:
    """A threaded echo server on loopback for the clients held across the kill."""
    lsock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(1 << 16):
                    conn.sendall(data)
            except ConnectionError:
                pass  # the checks reset the clients they hold across the kill

    def accept() -> None:
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield lsock.getsockname()
    stop.set()
    t.join()
    lsock.close()


class StandIn:
    """What check_kill_restart uses of a DockerTarget; `kill_and_restart` does `then`."""

    def __init__(self, addr: tuple[str, int], then: BaseException | tuple[float, float]) -> None:
        self.address, self.port = addr
        self.first_start = 0.5
        self.then = then

    def kill_and_restart(self, timeout: float) -> tuple[float, float]:
        if isinstance(self.then, BaseException):
            raise self.then
        return self.then


@pytest.mark.parametrize("engine", [0.1, 30.0], ids=["idle-engine", "slow-engine"])
def test_kill_restart_passes_a_server_back_in_time(echo_addr: tuple[str, int], engine: float) -> None:
    """However long the engine took to kill and start the container (a loaded machine), the
    server is judged by the time it took to listen once started."""
    r = faults.check_kill_restart(StandIn(echo_addr, (engine, 0.2)))  # type: ignore[arg-type]
    assert r.outcome == "passed", r


def test_kill_restart_fails_a_server_slow_to_listen_again(echo_addr: tuple[str, int]) -> None:
    r = faults.check_kill_restart(StandIn(echo_addr, (0.1, 2.5)))  # type: ignore[arg-type]  # bound: 1 + 2 x 0.5
    assert r.outcome == "failed" and "listening again 2.50s after the engine started it again" in r.detail, r


@pytest.mark.parametrize("then, words", [
    (de.ServerDied("exited 1: bind: Address already in use"), "did not come back after SIGKILL"),
    (de.DockerEnvError("srv not accepting on 10.0.0.2:7 after 10s\nlogs"), "did not listen again after SIGKILL"),
])
def test_kill_restart_fails_a_server_that_does_not_come_back(echo_addr: tuple[str, int], then: BaseException,
                                                             words: str) -> None:
    r = faults.check_kill_restart(StandIn(echo_addr, then))  # type: ignore[arg-type]
    assert r.outcome == "failed" and words in r.detail, r


def test_kill_restart_fails_a_server_that_refuses_the_clients() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        addr = s.getsockname()
    r = faults.check_kill_restart(StandIn(addr, (0.1, 0.2)))  # type: ignore[arg-type]
    assert r.outcome == "failed" and "before the kill, client 1 of 3" in r.detail, r


def test_kill_restart_error_is_the_engine_s_own(echo_addr: tuple[str, int]) -> None:
    r = faults.check_kill_restart(StandIn(echo_addr, docker.errors.APIError("500 Server Error")))  # type: ignore[arg-type]
    assert r.outcome == "error" and "the Docker engine failed" in r.detail, r
