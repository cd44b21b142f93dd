"""docker.*: what only a server in a container shows: descriptor exhaustion under the
environment profile's limit, (with --faults) a freeze, a network cut and a kill across the
container boundary, and whether the container stayed up through the whole run. They run under
--image, after every other family and in this order (docker.alive last: it judges the run);
elsewhere each is skipped with the reason."""

from __future__ import annotations

import collections
import selectors
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


def _nofile_clients(srv: DockerTarget, limit: int, extra: int = 24, quiet: float = 1.0,
                   stuck: float = 8.0) -> str:
    """More clients than the descriptor limit, each sending 512 distinct bytes; returns what
    happened, or fails the case.

    First all of them hold on: whom the server serves at its limit gets exactly its own bytes,
    and at least one is served. That phase ends once every client has its answer, or once one
    was served and nothing moved for `quiet` seconds (the others wait in the backlog or are
    stuck; only the second phase tells which), or once nothing moved for `stuck` seconds. Then the served ones
    leave, and each client leaves as soon as it is served, as clients do: a server that handles
    one client at a time goes through the backlog one by one. A waiting client that is not
    served, while no client was for `stuck` seconds, fails the case."""
    n = limit + extra
    data = [bytes([(i * 7 + j) % 251 for j in range(512)]) for i in range(n)]
    got = [bytearray() for _ in range(n)]
    state = ["pending"] * n  # pending, echoed, closed, wrong
    conns: list[socket.socket | None] = []
    sel = selectors.DefaultSelector()
    waiting: set[socket.socket] = set()  # registered with sel

    def leave(i: int) -> None:
        s = conns[i]
        if s is not None:
            if s in waiting:
                sel.unregister(s)
                waiting.discard(s)
            s.close()
            conns[i] = None

    def pump(quiet_after_one: float | None, close_served: bool) -> None:
        """Read until no client waits, or nothing moved for `quiet_after_one` s (once one was
        served) or for `stuck` s."""
        last = time.monotonic()
        while "pending" in state:
            idle = stuck if quiet_after_one is None or "echoed" not in state else quiet_after_one
            left = last + idle - time.monotonic()
            if left <= 0:
                return
            for key, _ in sel.select(min(left, 0.5)):
                i = key.data
                try:
                    chunk = conns[i].recv(4096)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""  # reset by the server: shed
                last = time.monotonic()
                if not chunk:
                    state[i] = "closed"
                elif not data[i].startswith(bytes(got[i] + chunk)):
                    state[i] = "wrong"
                    fail(f"Client {i} of {n} got bytes that are not its own (under RLIMIT_NOFILE {limit}).")
                else:
                    got[i] += chunk
                    if len(got[i]) < len(data[i]):
                        continue
                    state[i] = "echoed"
                sel.unregister(key.fileobj)
                waiting.discard(key.fileobj)  # type: ignore[arg-type]
                if close_served or state[i] == "closed":
                    leave(i)

    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET6 if ":" in srv.addr[0] else socket.AF_INET, socket.SOCK_STREAM)
            conns.append(s)
            try:
                s.settimeout(2.0)
                s.connect(srv.addr)
                s.sendall(data[i])
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, i)
                waiting.add(s)
            except OSError:
                state[i] = "closed"  # refused or reset at once: the server shed it
                leave(i)
        pump(quiet, close_served=False)
        first = collections.Counter(state)
        summary = (f"{n} clients against RLIMIT_NOFILE {limit}: {first['echoed']} echoed at once, "
                   f"{first['closed']} closed by the server, {first['pending']} waited")
        if first["echoed"] == 0:
            fail(f"{summary}; none was served while the limit was reached.")
        # The served ones leave: whoever waits in the backlog must now be served.
        for i in range(n):
            if state[i] != "pending":
                leave(i)
        pump(None, close_served=True)
        still = [i for i, st in enumerate(state) if st == "pending"]
        if still:
            fail(f"{summary}; {len(still)} of them still not served after the others left: no client was "
                 f"for {stuck:.0f} s (a descriptor leaked, or the server stopped accepting).")
        return summary
    finally:
        for i in range(len(conns)):
            leave(i)
        sel.close()


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
