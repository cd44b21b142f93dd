"""Building blocks the cases share: a checked round trip, the liveness probe, CPU windows."""

from __future__ import annotations

import socket
import time
from typing import Sequence

from .client import Deadline, Flow, chunked, connect, exchange, fill_until_stall, probe
from .oracle import CaseFailure, StreamCheck
from .target import Target, descriptors_exhausted, runnable_ns, thread_start


SENTINEL = b"<echoconf-sentinel>"


def roundtrip(server: Target, chunks: Sequence[bytes], what: str, *, deadline: float = 10.0,
              nodelay: bool = False, rcvbuf: int | None = None, hint: str = "",
              pause_every: int = 0, pause: float = 0.0, hold_reads: bool = False,
              recv_size: int = 1 << 18, half_close: bool = False) -> Flow:
    """Send the chunks while reading concurrently; the echo must be exact.

    half_close=False: a sentinel follows the data and must come back right after it (no
    stale or extra bytes in between); the client then closes. half_close=True: SHUT_WR after
    the data, read to EOF: the echo must be complete and end with FIN (not RST, not silence)."""
    sock = connect(server.addr, 2.0, rcvbuf=rcvbuf, nodelay=nodelay, factory=server.factory())
    try:
        # Corked, the client's FIN travels with its last data: a server that lets EOF win
        # over queued output (FM-05) then fails every time, not only when a race goes wrong.
        flow = Flow(sock, list(chunks) if half_close else [*chunks, SENTINEL], shut_wr=half_close,
                    cork=half_close and not nodelay,
                    pause_every=pause_every, pause=pause, hold_reads=hold_reads, recv_size=recv_size)
        exchange([flow], Deadline(deadline))
    finally:
        sock.close()
    judge(server, flow, what if half_close else what + ", then a sentinel", hint=hint,
          deadline=deadline, graceful=half_close)
    return flow


def judge(server: Target, flow: Flow, what: str, *, hint: str = "", deadline: float | None = None,
          others: Sequence[bytes] = (), graceful: bool | None = None) -> None:
    expected = b"".join(flow.chunks)
    failure = StreamCheck(what, expected, flow.data, flow.end, sent=flow.sent,
                          shortfall_hint=hint, others=others, deadline=deadline,
                          graceful_end=flow.shut_wr if graceful is None else graceful).verdict()
    if failure is not None:
        raise with_death(server, failure)


def fill_unread(server: Target, sock: socket.socket, limit: int, deadline: Deadline, stall: float) -> int:
    """client.fill_until_stall on a connection to `server`, its stalls confirmed against the
    server's run-queue time where its processes can be seen."""
    return fill_until_stall(sock, limit, deadline, stall=stall, waited=server.work_meter(waiting_only=True))


def with_death(server: Target, failure: CaseFailure) -> CaseFailure:
    """If the server died, that is the headline; the stream symptom becomes secondary.
    Any target that can tell a death (a process or a container the harness owns) says so."""
    died = server.death(grace=0.3)
    detail = {k: v for k, v in failure.detail.items() if k != "message"}
    if not died:
        # The cause, where it can be seen: a server out of descriptors can accept no one.
        full = descriptors_exhausted(server)
        if full is None:
            return failure
        return CaseFailure(f"{failure.detail['message']} Then {full}: it had none left to accept a client "
                           "with (FM-11 if connections that ended still hold theirs).",
                           **{**detail, "descriptors": full})
    msg = f"The server died: {died}."
    if "SIGPIPE" in died:
        msg += " It wrote to a connection the client had closed and SIGPIPE killed it (FM-07)."
    return CaseFailure(msg, **{**detail, "server_died": died,
                               "observed_failure": failure.detail["message"]})


def alive(server: Target, after: str, timeout: float = 1.0, settle: float = 0.0) -> None:
    """The liveness probe; on failure explain what the server did (or how it died).
    `settle` gives a process that is handling a reset in another thread the chance to die
    visibly; it can only turn a pass into a failure, never the other way round."""
    problem = probe(server.addr, timeout, server.factory(), server.work_meter())
    if problem is None and settle:
        died = server.death(grace=settle)
        if died:
            problem = f"then {died}"
    if problem is None:
        return
    raise with_death(server, CaseFailure(
        f"After {after}, {problem}: the server no longer serves new clients.", after=after))


def distinct(i: int, n: int, seed: int) -> bytes:
    """Client i's data: a header naming the client, then seeded bytes."""
    import random

    head = f"<client {i}>".encode()
    return (head + random.Random(seed * 7919 + i).randbytes(max(0, n - len(head))))[:n]


# A thread runnable (on a CPU or queued for one) more than half of every window in which the
# server has nothing new to do is spinning: a spinner is runnable about all of each, on an idle
# machine or a loaded one; a server waiting for events almost none, and one still finishing
# earlier work has a quiet window within three (runnable_during).
SPIN_LIMIT = 0.5


def runnable_during(server: Target, window: float, limit: float = 1.0, windows: int = 3) -> float:
    """The largest fraction of `window` seconds that one thread of the server was runnable:
    on a CPU or waiting in a run queue for one (/proc/PID/task/TID/schedstat). A thread that
    spins is runnable all the time (about 1.0) however loaded the machine is: another process
    on its core only turns its CPU time into run-queue wait. A thread that waits for events is
    runnable only while it handles one. CPU time alone falls with the machine's load, so a
    spinner would pass on a busy machine and verdicts would depend on what else runs.

    A window at or above `limit` is measured again, up to `windows` windows in all, and the
    quietest one counts: spinning is sustained, so a spinner fills every window, while a
    correct server still handling what the clients left it (on a loaded machine its run-queue
    wait stretches that work many times over) finishes it and has a quiet window."""
    quietest = 1e9
    for _ in range(max(1, windows)):
        quietest = min(quietest, _runnable_once(server, window))
        if quietest < limit:
            break
    return quietest


def _runnable_once(server: Target, window: float) -> float:
    pid = server.pid
    before = runnable_ns(pid)
    t0, booted = time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME)
    time.sleep(window)  # a measuring window: the verdict is the time runnable, not the sleep
    after = runnable_ns(pid)
    wall = (time.monotonic() - t0) * 1e9

    def grew(tid: str) -> int:
        if tid in before:
            return after[tid] - before[tid]
        # Not seen at the first look: a thread born since counts from its birth. One that was
        # there already but missed (a Node server once showed "runnable 519 % of 1 s") would
        # bring its whole past into the window: it is not counted.
        born = thread_start(pid, tid)
        return after[tid] if born is not None and born >= booted - 0.02 else 0

    return max((grew(t) for t in after), default=0) / wall


__all__ = ["roundtrip", "judge", "alive", "distinct", "runnable_during", "chunked", "with_death"]
