"""The client: the hang bound ends silent streams, never a reader's own hold; the liveness
probe waits for a busy server, never for an idle one."""

from __future__ import annotations

import socket
import threading
from typing import Callable, Iterator

import pytest

from echoconf import client
from echoconf.client import FIN, TIMEOUT, Deadline, Flow, connect, exchange, probe

Handler = Callable[[socket.socket], None]


def _echo(conn: socket.socket) -> None:
    """A blocking echo: while its client does not read, sendall blocks and it stops reading."""
    while data := conn.recv(1 << 16):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def _swallow(conn: socket.socket) -> None:
    """Reads everything and never answers: a hang."""
    while conn.recv(1 << 16):
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], tuple[str, int]]]:
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(handler: Handler) -> tuple[str, int]:
        lsock = socket.socket()
        # Small buffers, inherited by the accepted socket: a client that does not read
        # soon stops the sender, whatever the machine's autotuning limits.
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()

        def one() -> None:
            conn, _ = lsock.accept()
            with conn:
                try:
                    handler(conn)
                except OSError:
                    pass  # the client went away: the test judges what it received

        t = threading.Thread(target=one, daemon=True)
        t.start()
        servers.append((lsock, t))
        return lsock.getsockname()[:2]

    yield start
    for lsock, t in servers:
        lsock.close()
        t.join(10)


def test_hold_before_reading_is_not_a_hang(serve: Callable[[Handler], tuple[str, int]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The hold (0.1 s stall times the scale 5: 0.5 s) outlasts the hang bound (0.2 s), as on
    # a slow path; the correct server's echo must still come back whole.
    monkeypatch.setattr(client, "HANG_BOUND", 0.2)
    monkeypatch.setattr(client, "TIME_SCALE", 5.0)
    data = bytes(range(256)) * 4096  # 1 MiB: more than the buffers between them hold
    sock = connect(serve(_echo), 2.0, rcvbuf=4096)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        flow = Flow(sock, [data[i:i + 65536] for i in range(0, len(data), 65536)], hold_reads=True)
        exchange([flow], Deadline(30.0))
    assert flow.sent == len(data)
    assert flow.data == data and flow.end == FIN


def test_hang_bound_ends_a_silent_stream(serve: Callable[[Handler], tuple[str, int]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "HANG_BOUND", 0.2)
    sock = connect(serve(_swallow), 2.0)
    with sock:
        flow = Flow(sock, [b"ping"], shut_wr=False)
        exchange([flow], Deadline(600.0))  # only the hang bound can end it in the test's time bound
    assert flow.sent == 4 and flow.data == b"" and flow.end == TIMEOUT


def _late_echo(delay: float) -> Handler:
    """Answers only after `delay` seconds (a server still working through what came before)."""
    import time

    def handler(conn: socket.socket) -> None:
        data = conn.recv(64)
        time.sleep(delay)
        conn.sendall(data)

    return handler


def test_probe_waits_while_the_server_is_busy(serve: Callable[[Handler], tuple[str, int]]) -> None:
    # The meter reports the server runnable the whole time: it is slow, not stuck.
    assert probe(serve(_late_echo(1.0)), 0.3, work=lambda: 10.0) is None


def test_probe_fails_an_idle_server_at_its_timeout(serve: Callable[[Handler], tuple[str, int]]) -> None:
    problem = probe(serve(_late_echo(1.0)), 0.3, work=lambda: 0.0)
    assert problem is not None and "got b'' back (nothing more came within 0.3 s)" in problem


def test_probe_stops_waiting_when_the_server_goes_idle(serve: Callable[[Handler], tuple[str, int]]) -> None:
    busy = iter([0.0, 10.0])  # the first call starts the meter; busy for one step, then idle
    problem = probe(serve(_late_echo(2.0)), 0.3, work=lambda: next(busy, 0.0))
    assert problem is not None and "busy for a while, then went idle without answering" in problem


def test_probe_waits_for_a_busy_server_no_longer_than_its_limit(
        serve: Callable[[Handler], tuple[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "WORK_LIMIT", 0.5)
    problem = probe(serve(_late_echo(2.0)), 0.2, work=lambda: 10.0)
    assert problem is not None and "still busy" in problem


def test_probe_never_extends_under_the_hang_bound(serve: Callable[[Handler], tuple[str, int]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "HANG_BOUND", 0.3)
    assert probe(serve(_late_echo(1.0)), 0.3, work=lambda: 10.0) is not None


def test_session_meter_counts_what_the_server_forked() -> None:
    """The meter behind OwnedServer.work_meter sees a forked child's work, and a sleeping
    session's absence of it (runnable time, which a loaded machine cannot hide)."""
    import subprocess
    import sys
    import time

    from echoconf.target import session_runnable_ns

    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    print('ready', flush=True)\n"
            "    sys.stdin.read()\n"  # spins only once told to; the parent sleeps throughout
            "    end = time.monotonic() + 0.6\n"
            "    while time.monotonic() < end: pass\n"
            "    os._exit(0)\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        def busy_during(window: float) -> float:
            before = session_runnable_ns(proc.pid)
            t0 = time.monotonic()
            time.sleep(window)  # a measuring window
            after = session_runnable_ns(proc.pid)
            return sum(max(0, v - before.get(k, 0)) for k, v in after.items()) / 1e9 / (time.monotonic() - t0)

        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # both now wait
        assert busy_during(0.3) < 0.1
        assert proc.stdin is not None
        proc.stdin.close()  # the child starts spinning
        assert busy_during(0.4) > 0.5
    finally:
        proc.kill()
        proc.wait(5)


def test_session_meter_skips_a_process_being_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked handler that ends between the look at /proc and the look at its threads is
    being reaped: its task list answers ESRCH. The meter counts the others (xinetd forks a
    process per connection; this was a harness error in close.connect-close)."""
    import os

    from echoconf import target

    real = os.listdir

    def reaped(path: str) -> list[str]:
        if path == f"/proc/{os.getpid()}/task":
            raise ProcessLookupError(3, "No such process", path)
        return real(path)

    monkeypatch.setattr(target.os, "listdir", reaped)
    assert target.runnable_ns(os.getpid()) == {}


def test_spin_measure_ignores_a_thread_missed_at_the_first_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """steps.runnable_during counts a thread unseen at the first look from its birth; an old
    one missed then must not bring its whole past into the window."""
    import os
    import time

    from echoconf import steps

    end = time.process_time() + 0.3
    while time.process_time() < end:  # this thread's past: 0.3 s on a CPU at least
        pass
    real, looks = steps.runnable_ns, []

    def first_look_misses_the_main_thread(pid: int) -> dict[str, int]:
        seen = real(pid)
        if not looks:
            seen.pop(str(pid), None)
        looks.append(pid)
        return seen

    monkeypatch.setattr(steps, "runnable_ns", first_look_misses_the_main_thread)

    class Me:
        pid = os.getpid()

    assert steps.runnable_during(Me(), 0.1) < 0.5  # type: ignore[arg-type]


def test_spinning_is_sustained_and_a_burst_of_work_is_not() -> None:
    """steps.runnable_during over up to three windows: a process that is busy for the first
    window and then waits (a server finishing its clients' work) gets a quiet window; one that
    spins fills every window."""
    import subprocess
    import sys

    from echoconf import steps

    burst = ("import time\nend = time.monotonic() + 0.3\nwhile time.monotonic() < end: pass\n"
             "print('quiet', flush=True)\ntime.sleep(30)")
    spin = "print('spinning', flush=True)\nwhile True: pass"

    class Proc:
        def __init__(self, code: str) -> None:
            self.p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            self.pid = self.p.pid

    for code, spins in ((burst, False), (spin, True)):
        srv = Proc(code)
        try:
            if spins:
                assert srv.p.stdout is not None and srv.p.stdout.readline()
            measured = steps.runnable_during(srv, 0.25, 0.5)  # type: ignore[arg-type]
            assert (measured >= 0.5) == spins, (code, measured)
            if not spins:  # the first window was busy: the quiet one came after it
                assert srv.p.stdout is not None and srv.p.stdout.readline() == b"quiet\n"
        finally:
            srv.p.kill()
            srv.p.wait()


def test_a_stall_counts_only_once_the_server_had_its_turns() -> None:
    """fill_until_stall with the server's wait meter: a window in which the server waited for
    a CPU (it had no turn to read) is no stall; the filling ends only after a window in which
    it took nothing and never waited."""
    a, b = socket.socketpair()
    calls: list[float] = []

    def waited() -> float:  # starved through two confirmation windows, then idle
        calls.append(0.0)
        return 1.0 if len(calls) <= 4 else 0.0

    try:
        sent = client.fill_until_stall(a, 1 << 30, Deadline(10.0), stall=0.05, waited=waited)
        assert sent > 0 and len(calls) == 6, (sent, len(calls))
    finally:
        a.close()
        b.close()
