"""docker.*: what only a server in a container shows: descriptor exhaustion under the
environment profile's limit, (with --faults) a freeze, a network cut and a kill across the
container boundary, and whether the container stayed up through the whole run. They run under
--image, after every other family and in this order (docker.alive last: it judges the run);
elsewhere each is skipped with the reason."""

from __future__ import annotations

import collections
import socket
import time

import pytest

from echoconf import faults
from echoconf.caselib import case
from echoconf.client import probe
from echoconf.container import DockerTarget
from echoconf.oracle import fail
from echoconf.target import HarnessError, Target

WHY = "a server that dies, or stops serving, fails every client"


def _docker(server: Target) -> DockerTarget:
    assert isinstance(server, DockerTarget)  # the `docker` marker skipped every other target
    return server


def _nofile_clients(srv: DockerTarget, limit: int, extra: int = 24, deadline: float = 8.0) -> str:
    """More clients than the descriptor limit, each sending 512 distinct bytes; returns what
    happened, or fails the case."""
    n = limit + extra
    data = [bytes([(i * 7 + j) % 251 for j in range(512)]) for i in range(n)]
    got = [bytearray() for _ in range(n)]
    state = ["pending"] * n  # pending, echoed, closed, wrong
    conns: list[socket.socket | None] = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET6 if ":" in srv.addr[0] else socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(2.0)
                s.connect(srv.addr)
                s.sendall(data[i])
                s.setblocking(False)
                conns.append(s)
            except OSError:
                state[i] = "closed"  # refused or reset at once: the server shed it
                s.close()
                conns.append(None)

        def pump(until: float) -> None:
            while time.monotonic() < until and "pending" in state:
                moved = False
                for i, s in enumerate(conns):
                    if state[i] != "pending" or s is None:
                        continue
                    try:
                        chunk = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        state[i] = "closed"
                        continue
                    moved = True
                    if not chunk:
                        state[i] = "closed"
                        continue
                    got[i] += chunk
                    if not data[i].startswith(bytes(got[i])):
                        state[i] = "wrong"
                    elif len(got[i]) == len(data[i]):
                        state[i] = "echoed"
                if not moved:
                    time.sleep(0.02)  # polling sockets the server has not answered yet

        pump(time.monotonic() + deadline)
        first = collections.Counter(state)
        wrong = [i for i, st in enumerate(state) if st == "wrong"]
        if wrong:
            fail(f"Client {wrong[0]} of {n} got bytes that are not its own (under RLIMIT_NOFILE {limit}).")
        # The served ones leave: whoever waits in the backlog must now be served.
        for i, s in enumerate(conns):
            if state[i] != "pending" and s is not None:
                s.close()
        if first["pending"]:
            pump(time.monotonic() + deadline)
        still = [i for i, st in enumerate(state) if st == "pending"]
        summary = (f"{n} clients against RLIMIT_NOFILE {limit}: {first['echoed']} echoed at once, "
                   f"{first['closed']} closed by the server, {first['pending']} waited")
        if still:
            fail(f"{summary}; {len(still)} of them still not served {deadline:.0f} s after the others left "
                 "(a descriptor leaked, or the server stopped accepting).")
        if "wrong" in state:
            fail(f"{summary}; a waiting client got bytes that are not its own.")
        if first["echoed"] == 0:
            fail(f"{summary}; none was served while the limit was reached.")
        return summary
    finally:
        for s in conns:
            if s is not None:
                s.close()


@case("docker.nofile-exhaustion", "robust", "more clients than the environment profile's descriptor limit: "
      "the server stays alive, serves whom it can exactly, sheds or queues the rest, and serves again "
      "afterwards", fm=["FM-10"], docker=True, timeout=60,
      grade="must", why=WHY)
def test_nofile_exhaustion(server: Target) -> None:
    srv = _docker(server)
    limit = srv.nofile
    if limit is None:
        pytest.skip("the environment profile sets no descriptor limit (--env-profile low-nofile does)")
    summary = _nofile_clients(srv, limit)
    why = None
    for _ in range(3):  # bounded: the server may still be closing the crowd
        why = probe(srv.addr, 2.0)
        if why is None:
            break
    if why is not None:
        fail(f"{summary}; afterwards a new client was not served: {why}")


def _fault(check: faults.CheckResult) -> None:
    """A fault check's result as this case's verdict: `error` is the engine's failure."""
    if check.outcome == "error":
        raise HarnessError(check.detail)
    if check.outcome != "passed":
        fail(check.detail[:1].upper() + check.detail[1:])


@case("docker.pause-resume", "robust", faults.FAULT_CHECKS["docker.pause-resume"], faults=True, docker=True,
      timeout=60, grade="must", why=WHY)
def test_pause_resume(server: Target) -> None:
    _fault(faults.check_pause_resume(_docker(server)))


@case("docker.disconnect-reconnect", "robust", faults.FAULT_CHECKS["docker.disconnect-reconnect"], faults=True,
      docker=True, timeout=60, grade="must", why=WHY)
def test_disconnect_reconnect(server: Target) -> None:
    _fault(faults.check_disconnect_reconnect(_docker(server)))


@case("docker.kill-restart", "robust", faults.FAULT_CHECKS["docker.kill-restart"], faults=True, docker=True,
      fm=["FM-18"], timeout=60, grade="must", why=WHY)
def test_kill_restart(server: Target) -> None:
    _fault(faults.check_kill_restart(_docker(server)))


@case("docker.alive", "robust", "the server container stays up through the suite: never OOM-killed, "
      "killed by a signal or exited, even if restarted after it", docker=True, timeout=30,
      grade="must", why=WHY)
def test_alive(server: Target, charged_deaths: list[str]) -> None:
    srv = _docker(server)
    deaths = [h["reason"] or h["exit"] for h in srv.history]
    if deaths:
        times = "once" if len(deaths) == 1 else f"{len(deaths)} times"
        at = f" (charged to {', '.join(charged_deaths)})" if charged_deaths else ""
        fail(f"The server container died {times} during the suite and was restarted after "
             f"{'it' if len(deaths) == 1 else 'each death'}: {', '.join(deaths)}{at}.",
             deaths=deaths, charged_to=charged_deaths)
