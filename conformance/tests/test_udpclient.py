"""udpclient: Exchange (late answers are owed answers, never wrong or extra ones) and
PortUnreachables (only the ICMP messages about the given ports count)."""

from __future__ import annotations

import socket
import threading
import time

import os

import pytest

from echoconf.udpclient import Exchange, PortUnreachables, udp_socket


def test_a_late_answer_to_a_retried_request_is_not_taken_for_a_wrong_one() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    addr = srv.getsockname()

    def slow_echo() -> None:
        # The first request waits longer than the client's try: the client sends it again,
        # and then both answers come, the late one while the client asks its next question.
        first, peer = srv.recvfrom(100)
        time.sleep(0.3)
        srv.sendto(first, peer)
        for _ in range(3):
            data, peer = srv.recvfrom(100)
            srv.sendto(data, peer)

    t = threading.Thread(target=slow_echo, daemon=True)
    t.start()
    with udp_socket(addr) as s:
        ex = Exchange(s, addr)
        assert ex.ask(b"first", 0.2) == (True, 2)
        assert ex.ask(b"second", 1.0) == (True, 1)
        assert ex.unasked == []
    t.join(2)
    srv.close()


def test_an_answer_owed_to_nothing_is_unasked_at_once() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    addr = srv.getsockname()

    def truncating_echo() -> None:
        data, peer = srv.recvfrom(100)
        srv.sendto(data[:3], peer)

    threading.Thread(target=truncating_echo, daemon=True).start()
    with udp_socket(addr) as s:
        ex = Exchange(s, addr)
        t0 = time.monotonic()
        assert ex.ask(b"truncated", 5.0) == (False, 1)
        assert time.monotonic() - t0 < 2.0  # not the whole try: a wrong answer is not a lost one
        assert ex.unasked == [b"tru"]
    srv.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw ICMP socket needs root")
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_port_unreachables_count_only_the_ports_asked_about(family: int, host: str) -> None:
    """Datagrams to closed ports, two of them ours: each draws an ICMP port unreachable on
    loopback, and only ours count, however many others the host sees meanwhile."""
    closed = []
    for _ in range(5):
        with socket.socket(family, socket.SOCK_DGRAM) as s:  # bound, then closed: a free port
            s.bind((host, 0))
            closed.append(s.getsockname()[1])
    watch = PortUnreachables(family)
    try:
        assert watch.watching
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            for port in closed:
                s.sendto(b"x", (host, port))
        assert watch.count(set(closed[:2])) == 2
    finally:
        watch.close()
