"""udp.* on the network's side: which address an answer leaves from, which senders are never
answered (loop safety), IPv6. The RFC 862 core of the family is in test_udp.py."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import time
from typing import Callable, Iterator

import pytest

from echoconf import client, listeners
from echoconf.caselib import Ctx, Fresh, case
from echoconf.container import DockerTarget
from echoconf.netns import socket_in
from echoconf.oracle import CaseFailure, fail
from echoconf.steps import with_death
from echoconf.target import OwnedServer, Target
from echoconf.udpclient import Exchange, recv_until, udp_socket

from .test_udp import MAX6, exact

# A second address of the server's own host. All of 127.0.0.0/8 is loopback, so 127.0.0.2 is
# there in every network namespace; IPv6 loopback is ::1 alone, so the instance's namespace gets
# one from the unique local range.
OTHER4, OTHER6 = "127.0.0.2", "fd00:ec0::2"
# Services that answer whatever they get (CERT CA-1996-01): chargen, echo, daytime, time.
AMPLIFIERS = (19, 7, 13, 37)


def _same(a: str, b: str) -> bool:
    return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])


def _wildcard(socks: list[tuple[str, int]], port: int, family: int) -> bool:
    """Whether a UDP socket is bound to a wildcard of `family` on `port` ("::" takes IPv4 too:
    dual-stack is Linux's default, and /proc does not show IPV6_V6ONLY)."""
    wild = ("::",) if family == socket.AF_INET6 else ("0.0.0.0", "::")
    return any(p == port and a in wild for a, p in socks)


@case("udp.reply-source", "derived", f"a server bound to a wildcard address answers a datagram sent to a "
      f"second address of its host ({OTHER4}; {OTHER6} over IPv6) from that address, not from the one "
      "its route to the client prefers", needs=["udp"], fresh=Fresh(host="::", addresses=(OTHER6,), shared=True),
      grade="should", why="RFC 1122 4.1.3.5: a reply should leave from the specific address the request was "
      "sent to; a client with a connected socket, or a stateful firewall, never sees an answer from another "
      "address, so on a host with several addresses its echo is lost")
def test_udp_reply_source(server: Target, ctx: Ctx, fresh_server: Callable[..., Target]) -> None:
    if isinstance(server, OwnedServer):
        # A builtin listens where it is told: on "::" (both families) when it has IPv6, else on
        # 0.0.0.0. A command listens where it chooses; the case sees where, below.
        v6 = "ipv6" in ctx.capabilities
        srv = fresh_server(("::" if v6 else "0.0.0.0") if server.spec.announces else "127.0.0.1")
    elif isinstance(server, DockerTarget) and server.observable:
        srv = fresh_server()
    else:
        pytest.skip("needs a second address of the server's host to send to: the harness gives one to a "
                    "server it runs (--builtin, --impl, --command, --image), not to a target it only reaches")
    port = srv.addr[1]
    socks = listeners.of_pid(srv.pid, udp=True)
    if socks is None:
        pytest.skip("cannot read the server's socket table (/proc) to see where it is bound")
    tried = 0
    for family, here, there in ((socket.AF_INET, "127.0.0.1", OTHER4), (socket.AF_INET6, "::1", OTHER6)):
        if family == socket.AF_INET6 and "ipv6" not in ctx.capabilities:
            continue
        if not _wildcard(socks, port, family):
            continue
        tried += 1
        # The client is in the server's network namespace, on its loopback: from `here` to
        # `there`, both the server's host's own addresses. Unconnected, so that an answer from
        # the wrong address still arrives and can be named.
        with contextlib.closing(socket_in(srv.pid, family)) as s:
            s.bind((here, 0))
            ex = Exchange(s, (there, port), from_anywhere=True)
            payload = ctx.payload(64, f"source/{there}")
            exact(srv, ex, payload, f"A datagram to {there}:{port}")
            src = ex.source
            assert src is not None
            if not (_same(src[0], there) and src[1] == port):
                raise with_death(srv, CaseFailure(
                    f"A datagram sent to {there}:{port} was answered from {src[0]}:{src[1]}: a server bound to a "
                    f"wildcard must answer from the address it was asked at (IP_PKTINFO / IPV6_RECVPKTINFO); a "
                    "client with a connected socket drops this answer, and its echo is lost (RFC 1122 4.1.3.5).",
                    sent_to=there, answered_from=src[0]))
    if not tried:
        where = ", ".join(sorted({f"{a}:{p}" for a, p in socks if p == port})) or "no address the case found"
        pytest.skip(f"the server is bound to {where}, not to a wildcard address: it can only answer from "
                    "the address it was asked at")


def _source_toward(addr: tuple[str, int]) -> str:
    """The address this host sends from to reach `addr` (the route's preferred source). A
    loopback one becomes an address of this process's own in 127.0.0.0/8, so that two harnesses
    on one host never want the same address and port at once."""
    family = client.literal_family(addr[0]) or socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(addr)  # a UDP connect sends nothing: it only picks the route
        src = s.getsockname()[0]
    if family == socket.AF_INET and ipaddress.ip_address(src).is_loopback:
        n = os.getpid() % (1 << 16)
        return f"127.{n >> 8}.{n & 0xFF}.{9 + os.getpid() % 200}"
    return src


@contextlib.contextmanager
def _bound_to(family: int, source: str, port: int, bound: float) -> Iterator[socket.socket | str]:
    """A socket bound to source:port (a privileged port: root or CAP_NET_BIND_SERVICE), or why
    not. A port that another harness's case holds is waited for, up to `bound` seconds."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        until = time.monotonic() + bound
        while True:
            try:
                s.bind((source, port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.monotonic() > until:
                    yield f"port {port}: {e.strerror}"
                    return
                time.sleep(0.05)
        yield s
    finally:
        s.close()


@case("udp.loop-safety", "derived", "no answer to a datagram from source port 19 (chargen) or 7 (echo), "
      "services that answer whatever they get; a datagram from an ordinary port sent after it is answered",
      needs=["udp"],
      grade="should", why="not in RFC 862: CERT CA-1996-01; an echo server answering chargen or another echo "
      "server loops with it for ever, and a forged source port turns the pair into a flood")
def test_udp_loop_safety(server: Target, ctx: Ctx) -> None:
    family = client.literal_family(server.addr[0]) or socket.AF_INET
    source = _source_toward(server.addr)
    why: list[str] = []
    tested = 0
    for amp in AMPLIFIERS[:2]:
        with _bound_to(family, source, amp, 10.0) as s:
            if isinstance(s, str):
                why.append(s)
                continue
            tested += 1
            with udp_socket(server.addr) as plain:
                ex = Exchange(plain, server.addr)
                lure = ctx.payload(48, f"loop/{amp}")
                s.sendto(lure, server.addr)
                # The sentinel, from an ordinary port, after the lure: once its answer is here, an
                # answer to the lure, sent before it, is here too (with a margin of its round trip
                # for a server that answers out of order).
                started = time.monotonic()
                exact(server, ex, ctx.payload(48, f"after/{amp}"), f"A datagram sent after one from port {amp}")
                margin = max(0.25 * client.TIME_SCALE, 4 * (time.monotonic() - started))
                got = recv_until(s, time.monotonic() + margin)
                if got is not None:
                    fail(f"A datagram from port {amp} ({'chargen' if amp == 19 else 'echo'}) was answered "
                         f"({len(got[0])} bytes): two such services answering each other loop for ever, and a "
                         "forged source port makes the server a reflector (CERT CA-1996-01). Drop datagrams from "
                         "ports 7, 13, 19 and 37 (and 0).", source_port=amp, answered=len(got[0]))
    if not tested:
        pytest.skip(f"could not send from a privileged port ({'; '.join(why)}): the case needs root or "
                    "CAP_NET_BIND_SERVICE, and ports 19 and 7 free on this host")


@case("udp.ipv6", "derived", f"over IPv6 ([::1] for a server the harness runs on ::, the target host's own IPv6 "
      f"address for a remote one), datagrams of 0, 1, 1232, 8192 and {MAX6} bytes (IPv6's largest) are each "
      "answered exactly", needs=["udp", "ipv6"], fresh=Fresh(host="::", shared=True),
      grade="must", why="a server that declares IPv6 must answer over it as over IPv4; IPv6 carries 20 bytes "
      "more per datagram than IPv4", fm=["FM-17"])
def test_udp_ipv6(server: Target, ctx: Ctx, fresh_server: Callable[..., Target]) -> None:
    srv: Target = server
    if (isinstance(server, OwnedServer) and server.spec.announces) or isinstance(server, DockerTarget):
        srv = fresh_server()  # on "::" locally; on a dual-stack network as a container
    port = srv.addr[1]
    if srv is not server:
        addrs = [a for a in getattr(srv, "family_addrs", lambda: [("::1", port)])() if ":" in a[0]]
    else:
        v6 = getattr(server, "ipv6_addresses", None)  # a --target: its own host's IPv6 address(es)
        addrs, why = v6() if v6 is not None else ([("::1", port)], "")
        if not addrs:
            pytest.skip(f"cannot test the target's host over IPv6: {why}")
    if not addrs:
        pytest.skip("the server's network has no IPv6 address")
    for addr in addrs:
        with udp_socket(addr) as s:
            ex = Exchange(s, addr)
            for n in (0, 1, 1232, 8192, MAX6):
                exact(srv, ex, ctx.payload(n, f"v6/{n}"), f"Over IPv6 ([{addr[0]}]:{addr[1]}), {n} bytes")
