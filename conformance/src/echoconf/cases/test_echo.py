"""echo.*: RFC 862 "any data received is sent back", byte-exact, under any chunking."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, strategies as st

from echoconf.caselib import KiB, Ctx, Parked, case
from echoconf.client import Deadline, Flow, chunked, connect, exchange, recv_exactly, send_all
from echoconf.oracle import CaseFailure, check_stream
from echoconf.steps import SENTINEL, distinct, judge, roundtrip, with_death
from echoconf.target import Target


@case("echo.basic", "rfc862", 'b"ping" comes back byte-exact',
      grade="must", why="RFC 862: whatever is received is sent back")
def test_basic(server: Target) -> None:
    roundtrip(server, [b"ping"], 'b"ping"', deadline=2)


@case("echo.byte-values", "rfc862", "all 256 byte values (bytes(range(256)) x 64) in one 16 KiB write "
      "come back exact", fm=["FM-20", "FM-22"],
      grade="must", why="RFC 862 echoes data, not text: every byte value must come back")
def test_byte_values(server: Target) -> None:
    # One write: on loopback it arrives whole, so a server whose 16 KiB buffer overflows
    # when one read fills it (FM-22) fails every time, not only when two writes coalesce.
    roundtrip(server, [bytes(range(256)) * 64], "bytes(range(256)) x 64 in one write", deadline=5)


@case("echo.nul", "rfc862", "64 KiB of 0x00 (SO_RCVBUF 4 KiB) and text with embedded NULs come back exact",
      fm=["FM-20"],
      grade="must", why="a NUL byte is data: cutting the echo there loses bytes (RFC 862)")
def test_nul(server: Target) -> None:
    # Read through a small receive window, so the server's writes of the 64 KiB come back
    # short on every run: a server that mishandles that fails here every time too.
    roundtrip(server, [b"\x00" * (64 * KiB)], "64 KiB of 0x00", deadline=5, rcvbuf=4 * KiB)
    roundtrip(server, [b"hello\x00world\x00\x00!", b"\x00tail"], "text with embedded NULs", deadline=5)


@case("echo.crlf", "rfc862", "CR, LF, CRLF, lone LF, no trailing newline: exact", fm=["FM-20"],
      grade="must", why="line endings are data: translating them or waiting for them changes the echo (RFC 862)")
def test_crlf(server: Target) -> None:
    for payload in (b"line\r\n", b"a\nb\n", b"\r", b"\n", b"\r\n\r\n", b"cr\rlf\ncrlf\r\nend",
                    b"no newline at end", b"\n\r"):
        roundtrip(server, [payload], f"{payload!r}", deadline=2)


@case("echo.sizes", "rfc862", "single writes of k*2^m and k*2^m +-1 bytes (m=8..16, SO_RCVBUF 4 KiB) exact",
      fm=["FM-22", "FM-01"],
      grade="must", why="a write of any size must come back whole: bytes lost at a buffer edge break RFC 862")
def test_sizes(server: Target, ctx: Ctx) -> None:
    # Read through a small receive window: whether the server's writes of the larger sizes
    # come back short then does not depend on how the network between us cuts the stream
    # (whole on loopback, 1448-byte segments on a bridge), so a server that drops the tail
    # of a short write fails here on every path, not only where a read took a whole write.
    for m in range(8, 17):
        for n in (2 ** m - 1, 2 ** m, 2 ** m + 1):
            roundtrip(server, [ctx.payload(n)], f"one write of {n} bytes", deadline=5, rcvbuf=4 * KiB)


@case("echo.large", "rfc862", "64 MiB (16 MiB quick) streamed while reading concurrently: exact",
      fm=["FM-01"], timeout=120,
      grade="must", why="a long stream must come back whole and in order (RFC 862 over RFC 9293's reliable stream)")
def test_large(server: Target, ctx: Ctx) -> None:
    n = ctx.profile.large
    roundtrip(server, chunked(ctx.payload(n), 256 * KiB), f"{n >> 20} MiB streamed", deadline=20)


@case("echo.pipelined", "rfc862", "1000 writes of 3 to 16 bytes sent before any read: the concatenation comes back",
      fm=["FM-21"],
      grade="must", why="data sent before any echo was read is still data to echo (RFC 862)")
def test_pipelined(server: Target, ctx: Ctx) -> None:
    rng = ctx.rng()
    # At most 16 bytes a write, so the whole stream stays under 16 KiB whatever the seed: a
    # server whose reads overflow a 16 KiB buffer is echo.sizes's subject, and here it would
    # fail or not depending on how many writes the kernel had queued when the server read.
    chunks = [f"[{i}:".encode() + rng.randbytes(rng.randrange(0, 11)) + b"]" for i in range(1000)]
    roundtrip(server, chunks, "1000 small writes before reading", nodelay=True, hold_reads=True,
              deadline=10)


@case("echo.no-extra", "rfc862",
      "5 then 3 bytes, read 8, then a sentinel: the stream continues with the sentinel, no stale or "
      "extra bytes", fm=["FM-21"],
      grade="must", why="bytes the client never sent (stale buffer, another client's data) are not an echo (RFC 862)")
def test_no_extra(server: Target) -> None:
    sock = connect(server.addr, 2.0, factory=server.factory(), nodelay=True)
    d = Deadline(5.0)
    got = b""
    sent = b""
    try:
        for part in (b"12345", b"678"):
            send_all(sock, part, d)
            sent += part
            r = recv_exactly(sock, len(part), d)
            got += r.data
            if r.data != part:
                check_stream("5 bytes, then 3 bytes, each read back", sent, got, r.end,
                             graceful_end=False, deadline=5.0)
        flow = Flow(sock, [SENTINEL], shut_wr=False)
        exchange([flow], d)
    finally:
        sock.close()
    failure = None
    try:
        check_stream("5 bytes, 3 bytes, then a sentinel", sent + SENTINEL, got + flow.data,
                     flow.end, deadline=5.0, graceful_end=False)
    except CaseFailure as e:
        failure = e
    if failure:
        raise with_death(server, failure)


@st.composite
def payload_and_chunks(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    special = st.sampled_from([b"\x00", b"\xff", b"\r\n", b"\n", b"\r", b"\x00\x00", b"ab"])
    payload = draw(st.one_of(
        st.binary(max_size=4 * KiB),
        st.lists(special, max_size=200).map(b"".join),
        st.binary(min_size=1, max_size=64).map(lambda b: b * 1024),
    ))
    cuts = draw(st.lists(st.integers(0, len(payload)), max_size=12))
    bounds = sorted(set(cuts)) + [len(payload)]
    chunks, prev = [], 0
    for b in bounds:
        chunks.append(payload[prev:b])
        prev = b
    return chunks, draw(st.booleans())


@case("echo.chunking", "derived", "Hypothesis: any payload (NUL, 0xff, CRLF), any chunking, optional "
      "TCP_NODELAY: exact", fm=["FM-20"], timeout=120,
      grade="must", why="TCP is a byte stream (RFC 9293): how the client splits its writes must not change the echo")
@given(plan=payload_and_chunks())
def test_chunking(server: Target, plan: tuple[list[bytes], bool]) -> None:
    chunks, nodelay = plan
    roundtrip(server, chunks, f"{sum(map(len, chunks))} bytes in {len(chunks)} writes"
              f"{' with TCP_NODELAY' if nodelay else ''}", nodelay=nodelay, deadline=5)


@case("echo.sequential", "rfc862", "1000 sequential connections (500 quick, 2000 thorough), each with "
      "distinct data: exact", fm=["FM-11"], timeout=lambda p: 60 + p.sequential * (2.0 + 3.0),
      grade="must", why="every connection is an echo session of its own (RFC 862): failing the n-th loses its data")
def test_sequential(server: Target, ctx: Ctx) -> None:
    n = ctx.profile.sequential
    for i in range(n):
        # At most 160 bytes plus the sentinel: they fit any socket buffer, so plain blocking
        # send and receive cannot deadlock (and cost a third of what `roundtrip` does).
        data = distinct(i, 64 + i % 97, ctx.seed)
        sock = connect(server.addr, 2.0, factory=server.factory())
        try:
            d = Deadline(3.0)
            try:
                send_all(sock, data + SENTINEL, d)
            except OSError:
                pass  # the stream check below says what came back
            r = recv_exactly(sock, len(data) + len(SENTINEL), d)
        finally:
            sock.close()
        if r.data != data + SENTINEL:
            try:
                check_stream(f"connection {i + 1} of {n}, then a sentinel", data + SENTINEL, r.data,
                             r.end, graceful_end=False, deadline=3.0)
            except CaseFailure as e:
                raise with_death(server, e)


@case("echo.concurrent", "robust", "100 concurrent clients (64 quick, 200 thorough) with distinct data, "
      "interleaved: each gets only its own bytes", fm=["FM-21"], needs=["concurrent"],
      grade="must", why="another client's bytes in a stream corrupt it; a client kept waiting on another is not served")
def test_concurrent(server: Target, ctx: Ctx) -> None:
    n = ctx.profile.concurrent
    if server.nofile is not None and server.nofile < n + 16:
        # n clients need n descriptors in a one-process server, on top of the listener and
        # stdio: the outcome would tell how the server is built (a process per client passes),
        # not whether it is correct. docker.nofile-exhaustion judges it under the limit.
        pytest.skip(f"left out under RLIMIT_NOFILE {server.nofile} (the environment profile's): {n} "
                    "clients need more descriptors than a one-process server is allowed; "
                    "docker.nofile-exhaustion judges the server under the limit instead")
    # Under 16 KiB a client, sentinel included: a server whose reads overflow a 16 KiB buffer
    # is echo.sizes's subject, and here it would fail or not depending on how much of one
    # client's stream the kernel had queued when the server got to read it.
    payloads = [distinct(i, 15 * KiB, ctx.seed) for i in range(n)]
    socks = [connect(server.addr, 2.0, factory=server.factory()) for _ in payloads]
    try:
        flows = [Flow(s, [*chunked(p, 512), SENTINEL], shut_wr=False) for s, p in zip(socks, payloads)]
        exchange(flows, Deadline(10.0))
    finally:
        for s in socks:
            s.close()
    for i, f in enumerate(flows):
        judge(server, f, f"client {i} of {n} concurrent clients", deadline=10.0,
              others=[p for j, p in enumerate(payloads) if j != i])


def park_pause(server: Target, ctx: Ctx) -> Parked:
    """echo.pause, first half: 1000 bytes echoed; the idle time starts once they are back."""
    first = ctx.payload(1000, "a")
    sock = connect(server.addr, 2.0, factory=server.factory())
    try:
        d = Deadline(5.0)
        send_all(sock, first, d)
        r = recv_exactly(sock, len(first), d)
        if r.data != first:
            check_stream("1000 bytes before the pause", first, r.data, r.end, graceful_end=False,
                         deadline=5.0)
    except BaseException:
        sock.close()
        raise
    return Parked(sock, time.monotonic(), state={"first": first})


@case("echo.pause", "rfc862", "a pause of 2 s mid-connection (5 s thorough): the connection "
      "stays open and keeps echoing", fm=["R3"], timeout=60, park=park_pause, park_rank=1,
      grade="must", why="RFC 862: the echo lasts until the client terminates; an idle client is not done")
def test_pause(server: Target, ctx: Ctx, parked: Parked | None) -> None:
    p = parked or park_pause(server, ctx)
    first, second = p.state["first"], ctx.payload(1000, "b")
    try:
        # The client is idle; the verdict comes from the bytes after the pause.
        idle = p.wait(ctx.profile.pause)
        flow = Flow(p.sock, [second], shut_wr=False)
        exchange([flow], Deadline(5.0))
    finally:
        p.close()
    failure = None
    try:
        check_stream(f"1000 bytes, a {idle:.1f} s pause, 1000 more",
                     first + second, first + flow.data, flow.end, deadline=5.0, graceful_end=False,
                     shortfall_hint=f"the server did not keep the connection going after the client "
                     f"paused for {idle:.1f} s; RFC 862 says echoing continues until the "
                     "client terminates (R3)")
    except CaseFailure as e:
        failure = e
    if failure:
        raise with_death(server, failure)
