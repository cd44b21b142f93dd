"""Faults across the container boundary: a server container paused mid-stream, cut off its
network, killed and restarted. Each check says `failed` for what the server did and `error`
only for the engine's own failures; the docker.* cases of cases/test_docker.py run them (with
--faults) and turn that into their verdicts."""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import docker.errors

from .container import DockerTarget
from .dockerenv import DockerEnvError, ServerDied, probe


@dataclass
class CheckResult:
    id: str
    outcome: str  # passed, failed, error
    detail: str
    duration: float
    requirement: str = ""


FAULT_CHECKS: dict[str, str] = {
    "docker.pause-resume": "the server container is paused mid-stream for 2 s and resumed: every byte comes back",
    "docker.disconnect-reconnect": "the server's network is cut mid-stream for 2 s and restored: the server "
                                   "is alive and serves a new client",
    "docker.kill-restart": "with connections open, SIGKILL and restart in the same network namespace: "
                           "listening again, once the engine started it, within 1 s more than twice "
                           "its first start took",
}


def _connect(addr: str, port: int, timeout: float = 3.0) -> socket.socket:
    return socket.create_connection((addr, port), timeout=timeout)


def _first_diff(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for i in range(0, n, 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            for j in range(i, min(i + 4096, n)):
                if a[j] != b[j]:
                    return j
    return n


def stream_with_fault(
    addr: str, port: int, size: int, fault: Callable[[], None], at: float = 0.5, deadline: float = 30.0,
) -> tuple[bytes, bytes, str | None]:
    """Send `size` random bytes while reading concurrently; call `fault()` once `at` of them were
    sent; half-close; read to EOF. Returns (sent, received, error-or-None); bounded by `deadline`."""
    payload = random.Random(size).randbytes(size)
    s = _connect(addr, port)
    end = time.monotonic() + deadline
    err: list[str] = []
    fired = threading.Event()

    def sender() -> None:
        try:
            off, step = 0, 16384
            while off < size and time.monotonic() < end:
                if not fired.is_set() and off >= size * at:
                    fired.set()
                    fault()
                s.sendall(payload[off:off + step])
                off += step
            if off < size:
                err.append(f"send did not finish within {deadline:.0f}s ({off} of {size} bytes sent)")
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(f"send: {e}")

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = bytearray()
    try:
        while time.monotonic() < end:
            s.settimeout(max(0.05, min(1.0, end - time.monotonic())))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            got += chunk
        else:
            err.append(f"no EOF within {deadline:.0f}s ({len(got)} of {size} bytes back)")
    except OSError as e:
        err.append(f"recv: {e}")
    finally:
        t.join(timeout=max(0.1, end - time.monotonic()))
        s.close()
    return payload, bytes(got), "; ".join(err) or None


def check_pause_resume(srv: DockerTarget, size: int = 4 << 20, pause_s: float = 2.0) -> CheckResult:
    start = time.monotonic()
    cid = "docker.pause-resume"

    def fault() -> None:
        srv.pause()
        time.sleep(pause_s)
        srv.unpause()

    try:
        sent, got, err = stream_with_fault(srv.address, srv.port, size, fault)
    except OSError as e:
        return CheckResult(cid, "error", f"cannot connect: {e}", time.monotonic() - start, FAULT_CHECKS[cid])
    dur = time.monotonic() - start
    if not srv.alive():
        return CheckResult(cid, "failed", f"server died: {srv.exit_reason()}", dur, FAULT_CHECKS[cid])
    if got != sent:
        return CheckResult(cid, "failed", f"expected {len(sent)} bytes echoed, got {len(got)}; first difference "
                           f"at byte {_first_diff(sent, got)}" + (f" ({err})" if err else ""), dur, FAULT_CHECKS[cid])
    return CheckResult(cid, "passed", f"{len(sent)} bytes exact across a {pause_s:.0f} s pause", dur, FAULT_CHECKS[cid])


def check_disconnect_reconnect(srv: DockerTarget, size: int = 2 << 20, cut_s: float = 2.0) -> CheckResult:
    start = time.monotonic()
    cid = "docker.disconnect-reconnect"

    def fault() -> None:
        srv.disconnect()
        time.sleep(cut_s)
        srv.reconnect()

    try:
        sent, got, err = stream_with_fault(srv.address, srv.port, size, fault, deadline=20.0)
    except OSError as e:
        return CheckResult(cid, "error", f"cannot connect: {e}", time.monotonic() - start, FAULT_CHECKS[cid])
    first = "the cut connection resumed intact" if got == sent and not err else \
        f"the cut connection ended with {len(got)} of {len(sent)} bytes back ({err or 'early EOF'})"
    if not srv.alive():
        return CheckResult(cid, "failed", f"server died: {srv.exit_reason()}; {first}",
                           time.monotonic() - start, FAULT_CHECKS[cid])
    why = None
    for _ in range(3):  # bounded: a blocking server may still be finishing the cut connection
        why = probe(srv.address, srv.port, timeout=2.0)
        if why is None:
            break
    dur = time.monotonic() - start
    if why is not None:
        return CheckResult(cid, "failed", f"no new client served after the network came back: {why}; {first}",
                           dur, FAULT_CHECKS[cid])
    return CheckResult(cid, "passed", f"new client served after a {cut_s:.0f} s cut; {first}", dur, FAULT_CHECKS[cid])


def check_kill_restart(srv: DockerTarget, open_conns: int = 3) -> CheckResult:
    # A server that cannot bind again (no SO_REUSEADDR) never comes back, one that waits out
    # TIME_WAIT takes a minute. Only the time from the engine's start of the container until it
    # listens is the server's: the kill and the start are the engine's, which a loaded machine
    # slows down. That time is bounded relative to this container's own first start (engine
    # included there, so the bound is generous to a loaded machine and still far below a minute).
    bound = 1.0 + 2 * (srv.first_start or 0.0)
    start = time.monotonic()
    cid = "docker.kill-restart"
    conns: list[socket.socket] = []
    try:
        # One connection served (echo seen), the others only sent to (a server of one client at a
        # time has them in its backlog), one of them half-closed: all left open across the kill.
        which = 0
        try:
            for i in range(open_conns):
                which = i + 1
                s = _connect(srv.address, srv.port)
                conns.append(s)
                s.sendall(b"x" * 100)
                if i == 0:
                    got = b""
                    while len(got) < 100:
                        chunk = s.recv(100 - len(got))
                        if not chunk:
                            break
                        got += chunk
                elif i == 1:
                    s.shutdown(socket.SHUT_WR)
        except OSError as e:
            # The server's doing (refused, reset, silent): a verdict, not a harness error.
            return CheckResult(cid, "failed", f"before the kill, client {which} of {open_conns} to be "
                               f"held open across it failed: {e}", time.monotonic() - start, FAULT_CHECKS[cid])
        try:
            engine, took = srv.kill_and_restart(timeout=10.0)
        except ServerDied as e:
            return CheckResult(cid, "failed", f"did not come back after SIGKILL: {e}", time.monotonic() - start,
                               FAULT_CHECKS[cid])
        except DockerEnvError as e:
            # Restarted, but not listening in time: the server's doing too.
            return CheckResult(cid, "failed", f"did not listen again after SIGKILL: {str(e).splitlines()[0]}",
                               time.monotonic() - start, FAULT_CHECKS[cid])
        except (OSError, docker.errors.DockerException) as e:
            # The engine failed to kill or start the container.
            return CheckResult(cid, "error", f"the Docker engine failed: {e}", time.monotonic() - start,
                               FAULT_CHECKS[cid])
    finally:
        for s in conns:
            s.close()
    why = probe(srv.address, srv.port)
    dur = time.monotonic() - start
    if why is not None:
        return CheckResult(cid, "failed", f"restarted but {why}", dur, FAULT_CHECKS[cid])
    if took > bound:
        return CheckResult(cid, "failed", f"listening again {took:.2f}s after the engine started it again (bound "
                           f"{bound:.1f}s: 1 s more than twice its first start, {srv.first_start or 0:.2f}s); the "
                           f"kill and start took the engine {engine:.2f}s", dur, FAULT_CHECKS[cid])
    return CheckResult(cid, "passed", f"listening again {took:.2f}s after the engine started it again "
                       f"(the kill and start took the engine {engine:.2f}s)", dur, FAULT_CHECKS[cid])


def fault_checks(srv: DockerTarget) -> Iterator[CheckResult]:
    """The three fault checks in order; kill-restart last (it replaces the process)."""
    yield check_pause_resume(srv)
    yield check_disconnect_reconnect(srv)
    yield check_kill_restart(srv)
