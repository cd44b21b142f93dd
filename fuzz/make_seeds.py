#!/usr/bin/python3
"""Writes the hand-made seed corpora in fuzz/corpus/<target>/.

The simulated-socket targets read binary scripts (formats at the top of
loop_fuzzer.c, stream_fuzzer.c, e2e_fuzzer.c and simsock.c); this spells
them out by name so a seed says what it does. Run it after changing a
format, and commit what it writes:

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
    write("stream", stream_seeds())
    write("e2e", e2e_seeds())
    write("args", args_seeds())


if __name__ == "__main__":
    main()
