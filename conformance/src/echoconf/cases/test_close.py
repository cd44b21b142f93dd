"""close.*: half-close (RFC 9293 §3.6), the server never closing first (RFC 862), aborts."""

from __future__ import annotations

import time

from echoconf.caselib import KiB, MiB, Ctx, Parked, case
from echoconf.client import (WORK_LIMIT, Deadline, Flow, connect, exchange, probe,
                             reset, send_all)
from echoconf.oracle import CaseFailure, check_stream
from echoconf.steps import SENTINEL, alive, fill_unread, roundtrip, with_death
from echoconf.target import Target

FLUSH_HINT = "output still queued when the client half-closed was dropped (FM-05)"


@case("close.half-close-flush", "derived", "N in {1, 1023, 1024, 10000, 1 MiB, 16 MiB} (quick: up to "
      "1 MiB; thorough: and 64 MiB): send, SHUT_WR, read to EOF: equal, ended by FIN not RST", fm=["FM-05"], timeout=120,
      grade="must", why="RFC 9293: a FIN closes only the client's direction; the queued echo is owed, then a FIN")
def test_half_close_flush(server: Target, ctx: Ctx) -> None:
    for n in ctx.profile.flush_sizes:
        roundtrip(server, [ctx.payload(n)], f"{n} bytes in one write, then SHUT_WR",
                  deadline=10 + n / MiB * 0.5, hint=FLUSH_HINT, half_close=True)


@case("close.half-close-eof", "derived", "bare SHUT_WR with no data: EOF (FIN) within 1 s", fm=["FM-19"],
      grade="must", why="a client that half-closed waits for the server's FIN: without it an accepted client hangs")
def test_half_close_eof(server: Target) -> None:
    roundtrip(server, [], "SHUT_WR with no data", deadline=1.0, half_close=True)


def park_no_early_close(server: Target, ctx: Ctx) -> Parked:
    """close.no-early-close, first half: send 32 KiB and read nothing; the idle time starts
    then. 32 KiB fits in the kernel's buffers on both sides, so the server can write its whole
    echo at once: the case is about silence. (A server whose writes are blocked by a client
    that does not read is partial.slow-reader's and robust.stalled-reader's subject; blocking
    them here too would make relays that deadlock on a full pipe, such as socat's PIPE, fail
    this case or not depending on where the scheduler left the pipe.)"""
    data = ctx.payload(32 * KiB, "owed")
    sock = connect(server.addr, 2.0, factory=server.factory())
    try:
        send_all(sock, data, Deadline(10.0))
    except BaseException:
        sock.close()
        raise
    return Parked(sock, time.monotonic(), state={"data": data})


@case("close.no-early-close", "rfc862", "the server never closes first: a client sends 32 KiB, reads "
      "nothing and stays silent for 2 s (4 s thorough), then reads everything and sends a "
      "sentinel: exact, still open", fm=["R3"],
      park=park_no_early_close, park_rank=0,
      grade="must", why="RFC 862: the connection lasts until the client terminates it; the server must not close first")
def test_no_early_close(server: Target, ctx: Ctx, parked: Parked | None) -> None:
    p = parked or park_no_early_close(server, ctx)
    owed = p.state["data"]
    try:
        # Both directions silent; whether the server hung up shows in the bytes that follow.
        idle = p.wait(ctx.profile.idle)
        flow = Flow(p.sock, [SENTINEL], shut_wr=False, owed=len(owed))
        exchange([flow], Deadline(10.0))
    finally:
        p.close()
    try:
        check_stream(f"{len(owed)} bytes sent without reading, {idle:.1f} s of silence, then the echo "
                     "read and a sentinel", owed + SENTINEL, flow.data, flow.end, deadline=10.0,
                     graceful_end=False,
                     shortfall_hint="the server closed the connection although the client had not "
                     "terminated it; RFC 862: echoing continues until the calling user terminates (R3)")
    except CaseFailure as e:
        raise with_death(server, e)


@case("close.reset-pending", "robust", "a client sends 6 MiB without reading, then resets (SO_LINGER 0): "
      "the server survives and a fresh client is served within 1 s", fm=["FM-07", "FM-08"],
      grade="must", why="a reset ends one connection: a server that dies of it or stops serving fails every client")
def test_reset_pending(server: Target) -> None:
    sock = connect(server.addr, 2.0, factory=server.factory())
    sent = fill_unread(server, sock, 6 * MiB, Deadline(10.0), 0.2)
    reset(sock)
    alive(server, f"a client sent {sent} bytes without reading and then reset the connection")
    alive(server, "the reset and one successful probe", settle=0.1)


CONNECT_MANY = 200
# The sum of the steps' own bounds: a connect each, and a probe after every 16th.
CONNECT_MANY_BOUND = 60 + CONNECT_MANY * 2.0 + (CONNECT_MANY // 16 + 1) * (2.0 + 2.0 + WORK_LIMIT)


def _connect_many(server: Target, n: int, rst: bool) -> None:
    for i in range(n):
        try:
            s = connect(server.addr, 2.0, factory=server.factory())
        except OSError as e:
            raise with_death(server, CaseFailure(
                f"Connection {i + 1} of {n} (each {'reset' if rst else 'closed'} at once) failed: {e}.",
                connections=i))
        reset(s) if rst else s.close()
        if i % 16 == 15:
            # Let a one-at-a-time server drain its accept queue before we go on.
            problem = probe(server.addr, 2.0, server.factory(), server.work_meter())
            if problem:
                raise with_death(server, CaseFailure(
                    f"After {i + 1} connections that were {'reset' if rst else 'closed'} without data, "
                    f"{problem}.", connections=i + 1))


@case("close.connect-close", "robust", "200 x connect and close with no data: the server survives and "
      "serves the next client", fm=["FM-11"], timeout=CONNECT_MANY_BOUND,
      grade="must", why="a connection without data is normal: dying or stopping after it fails every later client")
def test_connect_close(server: Target) -> None:
    _connect_many(server, CONNECT_MANY, rst=False)
    alive(server, "200 connections opened and closed without data")


@case("close.connect-reset", "robust", "200 x connect then immediate RST: the server survives and serves "
      "the next client", fm=["FM-08", "FM-12"], timeout=CONNECT_MANY_BOUND,
      grade="must", why="a reset before any data is normal: dying or stopping after it fails every later client")
def test_connect_reset(server: Target) -> None:
    _connect_many(server, CONNECT_MANY, rst=True)
    alive(server, "200 connections opened and reset at once", settle=0.1)


@case("close.vanish-while-writing", "robust", "a client (SO_RCVBUF 4 KiB) sends until the server stops reading "
      "(at most 16 MiB), then closes without reading while the server writes: server survives, next "
      "client served", fm=["FM-07"],
      grade="must", why="a client may leave while owed its echo: dying of SIGPIPE fails every other client")
def test_vanish_while_writing(server: Target) -> None:
    # A small receive buffer closes the window at once, and sending until the server stops
    # reading outlasts its send buffer (autotuned up to 4 MiB): when the client vanishes the
    # server is sure to be blocked writing to it, not reading from it. (With 2 MiB, a server's
    # send buffer could hold the whole echo, and whether it read the vanished client's last
    # bytes in the same round as the next client's depended on scheduling.)
    sock = connect(server.addr, 2.0, rcvbuf=4 * KiB, factory=server.factory())
    sent = fill_unread(server, sock, 16 * MiB, Deadline(10.0), 0.2)
    sock.close()  # unread data: the kernel answers with RST while the server still writes
    alive(server, f"a client sent {sent} bytes and closed without reading its echo")
    alive(server, "the vanished client and one successful probe", settle=0.1)
