#!/usr/bin/python3
"""Writes the hand-made seed corpora in fuzz/corpus/<target>/.

The simulated-socket targets read binary scripts (formats at the top of
loop_fuzzer.c, udp_fuzzer.c, stream_fuzzer.c, e2e_fuzzer.c, simsock.c and
simdgram.c); this spells them out by name so a seed says what it does. Run
it after changing a format, and commit what it writes:

    /usr/bin/python3 fuzz/make_seeds.py

Outcome bytes of the server's calls are read from the same input as they
happen, so the loop seeds are mostly client scripts: the server runs when
the script ends, with every outcome benign, or at STEP, where the bytes
that follow decide what its calls see.
"""

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

# loop_fuzzer.c operations (low 3 bits; the argument is in the high 5).
STEP, CONNECT, SEND, READ, STALL, SHUTDOWN, RESET, TICK = range(8)
# simsock.c outcome bytes.
ALL, EINTR, EAGAIN = 0x00, 0xF0, 0xF8
ACCEPT_EMFILE, ACCEPT_ABORTED = 0xF8, 0xF4
WAIT_SPURIOUS, WAIT_TIMEOUT, WAIT_EINTR = 0xC0, 0xE0, 0xF0


def op(code: int, arg: int = 0) -> bytes:
    return bytes([code | (arg << 3)])


def n16(n: int) -> bytes:
    return bytes([n >> 8 & 0xFF, n & 0xFF])


def loop_prefix(backend: str, max_conns: int = 8) -> bytes:
    """max_conns, then the outcome bytes echo_loop_init consumes."""
    out = bytes([(8 - max_conns) % 8])
    if backend == "epoll":
        out += bytes([ALL])  # epoll_create1
    return out + bytes([ALL])  # open("/dev/null"), the reserve descriptor


def loop_seeds(backend: str) -> dict[str, bytes]:
    p = loop_prefix(backend)
    return {
        "empty": b"",
        "one-client-hello": p + op(CONNECT) + op(SEND, 0) + n16(5) + op(SHUTDOWN, 0),
        "three-clients": p + op(CONNECT, 2)
        + op(SEND, 0) + n16(1000) + op(SEND, 1) + n16(1)
        + op(STEP) + op(SEND, 2) + n16(30000) + op(STEP, 3)
        + op(SHUTDOWN, 1) + op(RESET, 2) + op(STEP, 1),
        "backpressure": p + op(CONNECT) + op(STALL, 0)
        + op(SEND, 0) + n16(0xFFFF) + op(SEND, 0) + n16(0xFFFF)
        + op(STEP, 3) + op(READ, 0) + n16(300) + op(STEP, 3) + op(STALL, 0),
        "reset-before-accept": p + op(CONNECT, 1) + op(SEND, 0) + n16(10)
        + op(RESET, 0) + op(SHUTDOWN, 1),
        "full-server": loop_prefix(backend, 1) + op(CONNECT, 3)
        + op(SEND, 0) + n16(64) + op(SEND, 1) + n16(64) + op(STEP, 3),
        "hostile-step": p + op(CONNECT) + op(SEND, 0) + n16(4000)
        + op(STEP) + bytes([ALL, ALL] + ([ALL] if backend == "epoll" else []))
        + op(STEP) + bytes([ALL, 1, 0x20, EINTR, EAGAIN])
        + op(STEP) + bytes([WAIT_SPURIOUS, 3, EAGAIN])
        + op(STEP) + bytes([WAIT_EINTR]) + op(SHUTDOWN, 0),
        "accept-failures": p + op(CONNECT, 3)
        + op(STEP) + bytes([ALL, ACCEPT_EMFILE, ALL, ALL, ACCEPT_ABORTED, EINTR])
        + op(TICK, 31) + op(STEP, 1) + bytes([WAIT_TIMEOUT]),
    }


# udp_fuzzer.c: the configuration byte and the operations.
UDP_V4, UDP_V6, UDP_DUAL = 0, 1, 2
U_STEP, U_DGRAM, U_BURST, U_ICMP, U_TCP = range(5)
WITH_TCP = 0x10
# simdgram.c: a datagram's source byte (port kinds in bits 3-5).
PORT_EPHEMERAL, PORT_0, PORT_ECHO, PORT_DAYTIME, PORT_CHARGEN, PORT_TIME, SELF, PORT_LOW = range(8)
OTHER_FAMILY = 4  # on a dual-stack socket: an IPv4 peer, as ::ffff:a.b.c.d
# recvmsg and sendmsg outcomes.
RECV_NO_CTL, RECV_CTL_CUT, RECV_EINTR, RECV_ENOBUFS = 0xD0, 0xD8, 0xE0, 0xE8
RECV_REFUSED, RECV_UNREACH, RECV_EAGAIN = 0xF0, 0xF4, 0xF8
SEND_EINTR, SEND_EMSGSIZE, SEND_ENOBUFS, SEND_REFUSED, SEND_EAGAIN = 0xE0, 0xE8, 0xEC, 0xF0, 0xF8


def source(peer: int = 0, port: int = PORT_EPHEMERAL, other: bool = False, sel: int = 0) -> int:
    return peer | (OTHER_FAMILY if other else 0) | port << 3 | sel << 6


def dgram(dst: int, src: int, size: int) -> bytes:
    return op(U_DGRAM, dst) + bytes([src]) + n16(size)


def udp_prefix(target: str, cfg: int = UDP_V4) -> bytes:
    """The configuration, then the outcome bytes of the set-up calls."""
    out = bytes([cfg])
    if target == "udp_serve":
        return out + bytes([ALL])  # getsockname
    if target == "udp_epoll":
        out += bytes([ALL])  # epoll_create1
    if cfg & WITH_TCP:
        out += bytes([ALL])  # open("/dev/null"), the reserve descriptor
        if target == "udp_epoll":
            out += bytes([ALL])  # epoll_ctl ADD, the listener
    out += bytes([ALL])  # getsockname
    if target == "udp_epoll":
        out += bytes([ALL])  # epoll_ctl ADD, the UDP socket
    return out


def udp_seeds(target: str) -> dict[str, bytes]:
    p = udp_prefix(target)
    seeds = {
        "empty": b"",
        "hello": p + dgram(0, source(), 5) + op(U_STEP),
        "dual-stack": udp_prefix(target, UDP_DUAL)
        + dgram(1, source(0, other=True), 100) + dgram(2, source(2), 200)
        + dgram(3, source(3, PORT_LOW, other=True, sel=2), 300) + op(U_STEP, 1),
        "ipv6-link-local": udp_prefix(target, UDP_V6 | 1 << 2)
        + dgram(2, source(2), 64) + dgram(0, source(1, sel=3), 1) + op(U_STEP),
        "never-answered": udp_prefix(target, UDP_V4 | 3 << 2)
        + b"".join(dgram(i % 4, source(i % 4, port), 10 + i)
                   for i, port in enumerate([PORT_0, PORT_ECHO, PORT_DAYTIME,
                                             PORT_CHARGEN, PORT_TIME, SELF]))
        + dgram(1, source(), 7) + op(U_STEP, 3),
        "self-on-port-7": udp_prefix(target, UDP_DUAL)
        + dgram(0, source(port=SELF, other=True), 8) + dgram(1, source(port=SELF), 8)
        + op(U_STEP),
        "largest": p + dgram(0, source(), 0xFFFF) + dgram(1, source(1), 0)
        + op(U_STEP),
        "largest-ipv6": udp_prefix(target, UDP_V6) + dgram(1, source(), 0xFFFF) + op(U_STEP),
        "burst": p + op(U_BURST, 31) + bytes([0]) + op(U_BURST, 31) + bytes([0x41])
        + op(U_STEP, 3),
        "hostile-recv": p + dgram(0, source(), 10) + dgram(1, source(1), 20)
        + dgram(2, source(2), 30) + op(U_STEP)
        + bytes([ALL, RECV_EINTR, RECV_ENOBUFS, RECV_REFUSED, RECV_UNREACH, RECV_EAGAIN,
                 RECV_NO_CTL, ALL, RECV_CTL_CUT + 3, ALL, RECV_CTL_CUT + 5, ALL]),
        # The pktinfo cut at the end of the control buffer (put_cmsg): once
        # read past its end by udp.c (fixed), now answered without it.
        "control-cut-ipv4": p + dgram(0, source(), 40) + op(U_STEP)
        + bytes([ALL, RECV_CTL_CUT + 3, ALL]),
        "control-cut-ipv6": udp_prefix(target, UDP_V6) + dgram(0, source(), 40) + op(U_STEP)
        + bytes([ALL, RECV_CTL_CUT + 4, ALL]),
        "hostile-send": p + dgram(0, source(), 10) + dgram(1, source(1), 20)
        + op(U_STEP) + bytes([ALL, ALL, SEND_EAGAIN])
        + op(U_STEP) + bytes([ALL, SEND_EINTR, SEND_EAGAIN])
        + op(U_STEP) + bytes([ALL, ALL, ALL, SEND_EMSGSIZE])
        + dgram(2, source(2), 30) + dgram(3, source(3), 40) + op(U_STEP, 1)
        + bytes([ALL, ALL, SEND_ENOBUFS, ALL, SEND_REFUSED]),
        "icmp": p + op(U_ICMP) + dgram(0, source(), 3) + op(U_STEP)
        + op(U_ICMP, 1) + op(U_STEP) + bytes([WAIT_SPURIOUS]) + dgram(1, source(1), 4),
        "wait-outcomes": p + dgram(0, source(), 50) + op(U_STEP) + bytes([WAIT_TIMEOUT])
        + op(U_STEP) + bytes([WAIT_EINTR]) + op(U_STEP) + bytes([WAIT_SPURIOUS, RECV_EAGAIN]),
    }
    if target != "udp_serve":
        t = udp_prefix(target, UDP_V4 | WITH_TCP)
        seeds["tcp-and-udp"] = t + op(U_TCP, 3) + dgram(0, source(), 500) + op(U_TCP, 0) \
            + op(U_BURST, 7) + bytes([3]) + op(U_STEP, 3) + dgram(1, source(1), 2000)
    return seeds


# stream_fuzzer.c: client actions when the server waits, then outcomes.
def send_small(n: int) -> int:
    return n - 1


HALF_CLOSE, CLIENT_RESET = 0xE0, 0xF0


def stream_seeds() -> dict[str, bytes]:
    return {
        "empty": b"",
        "hello": bytes([send_small(5), ALL, ALL, HALF_CLOSE, ALL]),
        "one-byte-at-a-time": bytes([0x80, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, EINTR, 0x10,
                                     send_small(100), ALL, EINTR, 0x05, HALF_CLOSE]),
        "large": bytes([0xDF, ALL, ALL, 0xC0, 0xE5, ALL, HALF_CLOSE]),
        "reset": bytes([send_small(50), 7, ALL, CLIENT_RESET]),
    }


# e2e_fuzzer.c operations.
E_OPEN, E_WRITE, E_READ, E_SHUTDOWN, E_RESET, E_PAUSE = range(6)


def e2e_seeds() -> dict[str, bytes]:
    return {
        "empty": b"",
        "hello": op(E_OPEN) + op(6, 4) + op(E_SHUTDOWN),
        "two-clients": op(E_OPEN) + op(E_OPEN) + op(E_WRITE, 0) + b"\x3f"
        + op(E_WRITE, 1) + b"\x01" + op(E_READ, 0) + b"\x10" + op(E_PAUSE, 3)
        + op(E_READ, 1) + b"\xff" + op(E_SHUTDOWN, 1),
        "reset-one": op(E_OPEN) + op(E_OPEN) + op(E_WRITE, 1) + b"\x20"
        + op(E_RESET, 1) + op(E_WRITE, 0) + b"\x02",
        "big": op(E_OPEN) + (op(E_WRITE) + b"\xff") * 4 + op(E_READ) + b"\x00",
    }


def args_seeds() -> dict[str, bytes]:
    return {
        "empty": b"",
        "port": b"--port\x000",
        "all": b"--host\x00127.0.0.1\x00--port\x007\x00--max-conns\x0064",
        "equals": b"--host=::1\x00--port=65535\x00--max-conns=1000000",
        "help": b"--port=7\x00--help",
        "bad-port": b"--port\x00-1",
        "missing-value": b"--max-conns",
        "unknown": b"--verbose",
    }


def write(target: str, seeds: dict[str, bytes]) -> None:
    # Only its own seeds: inputs added by hand (regressions) stay.
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (d / name).write_bytes(data)


def main() -> None:
    for backend in ("select", "poll", "epoll"):
        write(backend, loop_seeds(backend))
    for target in ("udp_select", "udp_poll", "udp_epoll", "udp_serve"):
        write(target, udp_seeds(target))
    write("stream", stream_seeds())
    write("e2e", e2e_seeds())
    write("args", args_seeds())


if __name__ == "__main__":
    main()
