"""udp.*: RFC 862's UDP echo: "When a datagram is received, the data from it is sent back in an
answering datagram." One answer per datagram, the same bytes, to the sender."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time

import pytest

from echoconf import client, listeners
from echoconf.caselib import Ctx, case
from echoconf.oracle import CaseFailure, fail
from echoconf.steps import with_death
from echoconf.target import Target, stopped
from echoconf.udpclient import TRIES, Exchange, PortUnreachables, no_ports, udp_socket

# Per try: loopback answers in microseconds, a slow path in its round trip (--time-scale).
WAIT = 1.0
# IPv4's largest UDP payload (65535 - 20 - 8); IPv6's is 65527 (65535 - 8).
MAX4, MAX6 = 65507, 65527
SENTINEL = b"<echoconf-udp-sentinel>"


def _wait() -> float:
    return WAIT * client.TIME_SCALE


def _died(server: Target, e: CaseFailure) -> CaseFailure:
    return with_death(server, e)


def _wrong(payload: bytes, got: bytes, what: str) -> CaseFailure:
    same = next((i for i, (a, b) in enumerate(zip(got, payload)) if a != b), min(len(got), len(payload)))
    return CaseFailure(
        f"{what}: a datagram of {len(payload)} bytes was answered with {len(got)} bytes"
        + (f", which differ from byte {same} on" if same < min(len(got), len(payload)) else
           (" (truncated)" if len(got) < len(payload) else " (more than was sent)"))
        + ": the answer must carry exactly the request's data (RFC 862).",
        size=len(payload), answered=len(got), first_difference=same)


def exact(server: Target, ex: Exchange, payload: bytes, what: str) -> None:
    """One request, one answer with the same bytes, or a failure that says which."""
    ok, tries = ex.ask(payload, _wait())
    if ex.unasked:
        raise _wrong(payload, ex.unasked[0], what)
    if not ok:
        elsewhere = ""
        if ex.strays:
            a, p = ex.strays[0]
            elsewhere = (f"; {len(ex.strays)} datagram(s) from other sources (the first from {a}:{p}) were left "
                         f"out: only an answer from {ex.addr[0]}:{ex.addr[1]}, where the request went, counts, as "
                         "for a client's connected socket")
        raise _died(server, CaseFailure(
            f"{what}: no answer to {tries} datagrams of {len(payload)} bytes sent {_wait():g} s apart "
            f"(RFC 862: each datagram is answered){elsewhere}.", size=len(payload), tries=tries,
            strays=len(ex.strays)))


@case("udp.sizes", "rfc862", f"datagrams of 1, 512, 1472, 1473, 8192 and {MAX4} bytes (and {MAX6} over "
      "IPv6) are each answered by one datagram with the same bytes", needs=["udp"],
      grade="must", why="RFC 862: the data of each datagram is sent back in an answering datagram")
def test_udp_sizes(server: Target, ctx: Ctx) -> None:
    sizes = [1, 512, 1472, 1473, 8192, MAX4]
    if client.literal_family(server.addr[0]) == socket.AF_INET6:
        sizes.append(MAX6)
    with udp_socket(server.addr) as s:
        ex = Exchange(s, server.addr)
        for n in sizes:
            exact(server, ex, ctx.payload(n, "udp"), f"{n} bytes")


@case("udp.empty", "rfc862", "a datagram of 0 bytes is answered by a datagram of 0 bytes", needs=["udp"],
      grade="must", why="RFC 862 answers every datagram; an empty one carries empty data, and its answer "
      "is how the client knows the server is there")
def test_udp_empty(server: Target) -> None:
    with udp_socket(server.addr) as s:
        exact(server, Exchange(s, server.addr), b"", "An empty datagram")


@case("udp.one-answer", "rfc862", "24 datagrams of 1 to 4097 bytes, one after another: exactly one "
      "answer each, no split, no duplicate, nothing else before a sentinel's answer", needs=["udp"],
      grade="must", why="RFC 862: each datagram gets one answering datagram; a split or a copy invents data")
def test_udp_one_answer(server: Target, ctx: Ctx) -> None:
    rng = ctx.rng("sizes")
    # Multiples of 1024 and their neighbours: a server that answers per buffer-full splits them.
    sizes = [1, 100, 1023, 1024, 1025, 2048, 4095, 4096, 4097] + [rng.randrange(1, 4098) for _ in range(15)]
    with udp_socket(server.addr) as s:
        ex = Exchange(s, server.addr)
        # The sentinel last: a server answers in order, so a duplicate or a piece of the last
        # datagram arrives before the sentinel's own answer.
        for i, payload in enumerate([ctx.payload(n, f"one/{i}") for i, n in enumerate(sizes)] + [SENTINEL]):
            what = "The sentinel" if payload is SENTINEL else f"Datagram {i + 1} ({len(payload)} bytes)"
            ok, tries = ex.ask(payload, _wait())
            if ex.unasked:
                extra = ex.unasked
                if ok:
                    fail(f"{what} was answered, and {len(extra)} more datagrams came that answer nothing "
                         f"({', '.join(str(len(x)) for x in extra[:5])} bytes): each datagram must get exactly "
                         "one answer, not a duplicate or one per piece (RFC 862).", extra=len(extra))
                fail(f"{what} was answered with {len(extra[0])} bytes that are not its data: one answer "
                     "per buffer-full, or another datagram's data.", size=len(payload), answered=len(extra[0]))
            if not ok:
                raise _died(server, CaseFailure(f"{what} got no answer in {tries} tries (RFC 862: each datagram "
                                                "is answered).", size=len(payload)))


@case("udp.clients", "rfc862", "8 clients send 5 distinct datagrams each, interleaved (an owned server is "
      "stopped meanwhile, so all 40 wait in its buffer at once): each client gets exactly its own 5 answers",
      needs=["udp"],
      grade="must", why="RFC 862: the answer goes to the datagram's sender; another client's data is invented data")
def test_udp_clients(server: Target, ctx: Ctx) -> None:
    socks = [udp_socket(server.addr) for _ in range(8)]
    try:
        exs = [Exchange(s, server.addr) for s in socks]
        mine = [[ctx.payload(64 + 8 * i + j, f"client/{i}/{j}") for j in range(5)] for i in range(8)]
        waiting = [set(m) for m in mine]
        for _ in range(TRIES):
            # An owned server is stopped meanwhile, so that every run puts all of them in its
            # socket buffer at once: whether a burst finds it busy is then not up to the
            # scheduler (a server that discards what is queued fails on every run).
            with stopped(server.pid) if server.observable else contextlib.nullcontext():
                for j in range(5):
                    for i, ex in enumerate(exs):
                        if mine[i][j] in waiting[i]:
                            ex.send(mine[i][j])
            until = time.monotonic() + _wait()
            for i, ex in enumerate(exs):
                while waiting[i] and (got := ex.take(until)) is not None:
                    waiting[i].discard(got)
                if ex.unasked:
                    got = ex.unasked[0]
                    other = next((k for k, m in enumerate(mine) if got in m), None)
                    fail(f"Client {i + 1} got a datagram of {len(got)} bytes that "
                         + (f"client {other + 1} sent" if other is not None else "no client sent")
                         + ": answers must go to the datagram's own sender (RFC 862).", client=i + 1)
            if not any(waiting):
                return
        missing = sum(len(w) for w in waiting)
        raise _died(server, CaseFailure(f"{missing} of 40 datagrams from 8 clients got no answer in {TRIES} "
                                        "tries: the server does not answer every client.", missing=missing))
    finally:
        for s in socks:
            s.close()


@case("udp.unreachable", "derived", "64 clients vanish before their answers (an owned server is stopped "
      "meanwhile, so each answer meets a closed port: ICMP port unreachable goes back to it, confirmed by the "
      "ICMP messages seen on loopback, or this host's UDP NoPorts count); then a new client's datagram is "
      "answered", needs=["udp"],
      grade="must", why="a client that leaves is routine for UDP: the error it causes must not stop the server")
def test_udp_unreachable(server: Target, ctx: Ctx) -> None:
    # The answers must meet closed ports. An owned server is stopped while 64 clients send and
    # close, so every answer finds its client gone, on every run; a server out of reach gets
    # the same clients unstopped, and is answered so fast on an idle machine that the case
    # may not get to test it: then it is skipped, never failed, for want of a test. Over
    # loopback the ICMP messages that quote these clients' ports are counted (root), so that
    # other traffic on the host, another run's clients among it, never counts as theirs.
    family = client.literal_family(server.addr[0]) or socket.AF_INET
    loopback = client.literal_family(server.addr[0]) is not None and ipaddress.ip_address(server.addr[0]).is_loopback
    watch = PortUnreachables(family) if loopback else None
    before = no_ports()
    ports: set[int] = set()
    try:
        hold = stopped(server.pid) if server.observable else contextlib.nullcontext()
        # The next client's socket first: opened after them, it could get a port that a vanished
        # client had, and the late answer to that client.
        with udp_socket(server.addr) as s:
            with hold:
                for i in range(64):
                    with udp_socket(server.addr) as gone:
                        gone.sendto(ctx.payload(32, f"gone/{i}"), server.addr)
                        ports.add(gone.getsockname()[1])
            try:
                exact(server, Exchange(s, server.addr), ctx.payload(100, "after"),
                      "After 64 clients vanished before their answers")
            except CaseFailure as e:
                raise _died(server, e)
        met = watch.count(ports) if watch is not None and watch.watching else None
    finally:
        if watch is not None:
            watch.close()
    if met is not None:
        if met == 0:
            pytest.skip("no answer met a closed port (no ICMP port unreachable quoted these clients' ports): "
                        "the server answered none of the clients that left, so this case could not test it")
        return
    after = no_ports()
    if before is not None and after is not None and after == before:
        pytest.skip("no answer met a closed port (this host's UDP NoPorts count did not move): the server "
                    "answered each client before it left, so this case could not test it")


BURST, BURST_SIZE = 64, 512


@case("udp.burst", "rfc862", f"{BURST} datagrams of {BURST_SIZE} bytes from one client at once (an owned server is "
      "stopped meanwhile, so all wait in its socket buffer): every one is answered, unless the kernel's own "
      "drop counters account for it", needs=["udp"],
      grade="must", why="RFC 862: each datagram is answered; a server that reads one per wakeup, or discards "
      "what was queued while it answered, loses datagrams the kernel delivered")
def test_udp_burst(server: Target, ctx: Ctx) -> None:
    payloads = [ctx.payload(BURST_SIZE, f"burst/{i}") for i in range(BURST)]
    with udp_socket(server.addr) as s:
        ex = Exchange(s, server.addr)
        mine = s.getsockname()[1]
        own_before = listeners.udp_drops("self", mine) or 0
        srv_before = listeners.udp_drops(server.pid, server.addr[1]) if server.observable else None
        # Stopped, the server meets the burst as one queue on every run; a server out of reach
        # gets it as fast as this side sends, and whatever it misses is sent again (TRIES).
        with stopped(server.pid) if server.observable else contextlib.nullcontext():
            for p in payloads:
                ex.send(p)
        waiting = set(payloads)
        tries = 1 if server.observable else TRIES
        for attempt in range(tries):
            if attempt:
                for p in waiting:
                    ex.send(p)
            until = time.monotonic() + _wait()
            while waiting and (got := ex.take(until)) is not None:
                waiting.discard(got)
            if ex.unasked:
                fail(f"In a burst of {BURST} datagrams of {BURST_SIZE} bytes, an answer of {len(ex.unasked[0])} bytes "
                     "carries data no datagram of it had: each answer must carry exactly its request's data "
                     "(RFC 862).", answered=len(ex.unasked[0]))
            if not waiting:
                return
        own = (listeners.udp_drops("self", mine) or 0) - own_before
        srv_after = listeners.udp_drops(server.pid, server.addr[1]) if server.observable else None
        srv = srv_after - srv_before if srv_after is not None and srv_before is not None else None
        if srv is not None and own + srv >= len(waiting):
            pytest.skip(f"{len(waiting)} of {BURST} datagrams got no answer, and the kernel dropped {srv} at the "
                        f"server's socket and {own} at this client's (buffers full): this host cannot give the "
                        "case the burst it needs")
        kernel = (f"; the kernel dropped {srv} at the server's socket and {own} at the client's, so the server "
                  "lost the rest" if srv is not None else "")
        raise _died(server, CaseFailure(
            f"{len(waiting)} of {BURST} datagrams of {BURST_SIZE} bytes sent at once got no answer"
            + (f" in {tries} tries" if tries > 1 else "") + kernel
            + ": each datagram must be answered (RFC 862), however many wait.", missing=len(waiting),
            kernel_drops=srv))
