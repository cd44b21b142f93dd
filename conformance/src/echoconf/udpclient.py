"""UDP echo from the client's side (RFC 862's second service): datagrams out, answers in.

A datagram may be lost on the way there or back without any fault of the server's, so a
request that gets no answer within its deadline is sent again (up to `TRIES` times); an
answer that is not owed to any request sent is never loss, and fails at once (`Exchange`).
"""

from __future__ import annotations

import collections
import ipaddress
import socket
import time
from typing import Callable

from .client import Addr, literal_family

TRIES = 3
RCVBUF = 1 << 20


def udp_socket(addr: Addr) -> socket.socket:
    """A client socket for `addr`, bound at once (to its family's wildcard, as its first send
    would bind it): its port is its own from here on, so a case that opens it before clients
    that vanish knows that no answer to them can reach it."""
    family = literal_family(addr[0])
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    except OSError:
        s.close()
        raise
    return s


class Exchange:
    """One client socket's requests and answers. Every request sent is owed one answer; a
    request sent again (its answer was late, not lost) is owed one more, so a late answer to an
    earlier request is never taken for a wrong or an extra one, on a loaded machine or a slow
    path. An answer that matches nothing owed is `unasked`.

    Only datagrams from the address and port asked count, as for a connected socket: the port
    this socket has was another socket's a moment ago, and a late answer to that one (from
    another server, or another instance on the same host) may still come. Such a datagram is a
    `stray`, never the server's answer. `from_anywhere` takes answers from any source, for the
    case that judges where they come from (udp.reply-source)."""

    def __init__(self, sock: socket.socket, addr: Addr, from_anywhere: bool = False) -> None:
        self.sock = sock
        self.addr = addr
        self.owed: collections.Counter[bytes] = collections.Counter()
        self.unasked: list[bytes] = []
        self.strays: list[Addr] = []  # sources of datagrams from elsewhere, left out
        self.source: Addr | None = None  # where the last owed answer came from
        self._from = None if from_anywhere else same_source(addr)

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, self.addr)
        self.owed[payload] += 1

    def take(self, until: float) -> bytes | None:
        """The next answer that was owed (late ones included); None at `until`, or as soon as
        an answer owed to nothing came (kept in `unasked`)."""
        while True:
            got = recv_until(self.sock, until)
            if got is None:
                return None
            if self._from is None or self._from(got[1]):
                break
            self.strays.append(got[1])
        if self.owed[got[0]] > 0:
            self.owed[got[0]] -= 1
            self.source = got[1]
            return got[0]
        self.unasked.append(got[0])
        return None

    def ask(self, payload: bytes, wait: float, tries: int = TRIES) -> tuple[bool, int]:
        """Send `payload` until its own answer comes (at most `tries` times, `wait` seconds
        each); late answers to earlier requests are taken on the way. Returns (answered, sent)."""
        for sent in range(1, tries + 1):
            self.send(payload)
            until = time.monotonic() + wait
            while (got := self.take(until)) is not None:
                if got == payload:
                    return True, sent
            if self.unasked:
                return False, sent  # a wrong answer: the caller says which
        return False, tries


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def same_source(addr: Addr) -> Callable[[Addr], bool] | None:
    """Whether a datagram's source is `addr`, addresses compared by value ("::1" is "0:0::1",
    an IPv4-mapped address is its IPv4 one); None when `addr` is not a literal address, and
    then any source is taken."""
    want = _ip(addr[0])
    if want is None:
        return None
    return lambda src: src[1] == addr[1] and _ip(src[0]) == want


def recv_until(sock: socket.socket, until: float) -> tuple[bytes, Addr] | None:
    """One datagram, or None when `until` (monotonic) passes first."""
    left = until - time.monotonic()
    if left <= 0:
        return None
    sock.settimeout(left)
    try:
        data, src = sock.recvfrom(1 << 17)
    except (socket.timeout, BlockingIOError):
        return None
    return data, src[:2]


def no_ports() -> int | None:
    """Datagrams this network namespace's kernel received for a port nobody had bound, over
    IPv4 and IPv6 (/proc/net/snmp Udp NoPorts, /proc/net/snmp6 Udp6NoPorts): each one was
    answered with an ICMP port unreachable. None when the counters cannot be read."""
    total = 0
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        total += int(rows[1][rows[0].index("NoPorts")])
        with open("/proc/net/snmp6") as f:
            total += sum(int(v) for k, v in (line.split() for line in f if line.strip()) if k == "Udp6NoPorts")
    except (OSError, IndexError, ValueError):
        return None
    return total


class PortUnreachables:
    """The ICMP (ICMPv6) port unreachable messages that this host's loopback carries for UDP
    datagrams to given ports: what a server's answers met when their clients had gone. Read
    from a raw socket (root), so that only this case's own clients count, whatever else runs on
    the host at the time; `watching` is False where that cannot be had (no root), and then
    `count` is None. Open it before the answers are sent; `count` takes what came since."""

    def __init__(self, family: int) -> None:
        self.family = family
        proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
        try:
            self._sock: socket.socket | None = socket.socket(family, socket.SOCK_RAW, proto)
            self._sock.setblocking(False)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        except OSError:
            self._sock = None
        self._seen = 0

    @property
    def watching(self) -> bool:
        return self._sock is not None

    def _quoted_port(self, pkt: bytes) -> int | None:
        """The destination port of the UDP datagram an ICMP port unreachable quotes."""
        if self.family == socket.AF_INET6:
            icmp = pkt  # a raw ICMPv6 socket gets no IPv6 header
            if len(icmp) < 8 + 40 + 4 or icmp[0] != 1 or icmp[1] != 4 or icmp[8 + 6] != socket.IPPROTO_UDP:
                return None
            return int.from_bytes(icmp[8 + 40 + 2:8 + 40 + 4], "big")
        if len(pkt) < 20:
            return None
        icmp = pkt[(pkt[0] & 0x0F) * 4:]  # after its IPv4 header
        if len(icmp) < 8 + 20 or icmp[0] != 3 or icmp[1] != 3:
            return None
        inner = icmp[8:]
        ihl = (inner[0] & 0x0F) * 4
        if inner[9] != socket.IPPROTO_UDP or len(inner) < ihl + 4:
            return None
        return int.from_bytes(inner[ihl + 2:ihl + 4], "big")

    def count(self, ports: set[int]) -> int | None:
        if self._sock is None:
            return None
        while True:
            try:
                pkt = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return self._seen
            if self._quoted_port(pkt) in ports:
                self._seen += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


def probe(addr: Addr, timeout: float = 1.0) -> str | None:
    """The liveness probe of a UDP-only server: b"ping" answered with b"ping" within `timeout`
    seconds (times the TIME_SCALE; two tries, a datagram may be lost). None when it passed,
    else what happened."""
    from . import client

    wait = timeout * client.TIME_SCALE / 2
    with udp_socket(addr) as s:
        ex = Exchange(s, addr)
        ok, _ = ex.ask(b"ping", wait, 2)
    if ex.unasked:
        return f"a datagram b\"ping\" was answered with {ex.unasked[0][:40]!r}"
    return None if ok else f"a datagram b\"ping\" got no answer within {2 * wait:g} s"
