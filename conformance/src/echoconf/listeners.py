"""The kernel's tables of listening TCP and bound UDP sockets, read without connecting.

Readiness must not spend a client: a server that exits after its first client (or counts
them) would otherwise have that client taken by "is it up yet?". So whether a server listens
is read from /proc/PID/net/tcp{,6}, the table of the network namespace the process is in.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

# The line a server may print when ready: `listening ADDR PORT`, and the reference servers
# name the transports they serve after it (`listening :: 7 tcp udp`).
ANNOUNCEMENT = r"^listening (\S+) (\d+)((?: (?:tcp|udp))*)\s*$"


LISTEN, UNCONNECTED = "0A", "07"  # the kernel's TCP_LISTEN; TCP_CLOSE, as a bound UDP socket shows


def parse(text: str, state: str = LISTEN) -> list[tuple[str, int]]:
    """(address, port) of the sockets in `state` in /proc/net/{tcp,udp}{,6} text: listening
    TCP sockets, or with UNCONNECTED the UDP sockets bound and not connected (a server's)."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4 or f[3] != state or ":" not in f[1]:
            continue
        hexaddr, hexport = f[1].split(":")
        try:
            raw = bytes.fromhex(hexaddr)
            port = int(hexport, 16)
        except ValueError:
            continue
        if len(raw) == 4:
            addr = str(ipaddress.IPv4Address(raw[::-1]))
        elif len(raw) == 16:
            addr = str(ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))
        else:
            continue
        out.append((addr, port))
    return out


def of_pid(pid: int, udp: bool = False) -> list[tuple[str, int]] | None:
    """The listening TCP sockets (`udp`: the bound UDP sockets) of the network namespace that
    process `pid` is in; None when they cannot be read (the process is gone, or /proc is not
    this host's)."""
    proto = "udp" if udp else "tcp"
    try:
        return parse("".join(p.read_text() for p in (Path(f"/proc/{pid}/net/{proto}"), Path(f"/proc/{pid}/net/{proto}6"))
                             if p.exists()), UNCONNECTED if udp else LISTEN)
    except OSError:
        return None


def accepts_on(socks: list[tuple[str, int]], address: str, port: int) -> bool:
    """Whether one of `socks` takes connections to address:port. A listener on "::" counts as
    dual-stack (the Linux default; /proc does not show IPV6_V6ONLY)."""
    wild = ("::", address) if ":" in address else ("0.0.0.0", "::", address, f"::ffff:{address}")
    return any(p == port and a in wild for a, p in socks)


def udp_drops(pid: int | str, port: int) -> int | None:
    """Datagrams the kernel dropped (receive buffer full, memory) on the UDP sockets bound to
    `port` in the network namespace of process `pid` ("self": this one): the last column of
    /proc/PID/net/udp{,6}. None when the table cannot be read or has no such socket."""
    total, seen = 0, False
    for proto in ("udp", "udp6"):
        try:
            text = Path(f"/proc/{pid}/net/{proto}").read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            f = line.split()
            if len(f) < 13 or ":" not in f[1]:
                continue
            try:
                if int(f[1].rsplit(":", 1)[1], 16) == port:
                    total += int(f[-1])
                    seen = True
            except ValueError:
                continue
    return total if seen else None
