"""The client's exchange loop: the hang bound ends silent streams, never a reader's own hold."""

from __future__ import annotations

import socket
import threading
from typing import Callable, Iterator

import pytest

from echoconf import client
from echoconf.client import FIN, TIMEOUT, Deadline, Flow, connect, exchange

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
