"""udpclient: Exchange (late answers are owed answers, never wrong or extra ones) and
PortUnreachables (only the ICMP messages about the given ports count)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import can_unshare_net, load_report, outcomes, run_in_netns
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


def _late_answer_from_another_port(payload: bytes, from_anywhere: bool) -> tuple[Exchange, bool]:
    """A client asks a server that never answers; meanwhile another socket on the same host
    sends the client the very bytes it asked for, as a late answer of another server to the
    port's previous owner would."""
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.1", 0))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    with mute, other, udp_socket(mute.getsockname()) as s:
        ex = Exchange(s, mute.getsockname(), from_anywhere=from_anywhere)
        ex.send(payload)
        other.sendto(payload, s.getsockname())
        other.sendto(b"not asked", s.getsockname())
        got = ex.take(time.monotonic() + 0.3)
    return ex, got == payload


def test_a_datagram_from_another_source_is_a_stray_not_an_answer() -> None:
    ex, taken = _late_answer_from_another_port(b"owed bytes", from_anywhere=False)
    assert not taken
    assert ex.unasked == []  # not a wrong answer either: the server sent nothing
    assert len(ex.strays) == 2


def test_from_anywhere_takes_an_answer_whatever_its_source() -> None:
    ex, taken = _late_answer_from_another_port(b"owed bytes", from_anywhere=True)
    assert taken
    assert ex.strays == []
    assert ex.source is not None and ex.source[1] != ex.addr[1]


@pytest.mark.parametrize("asked", ["::1", "0:0::1"])
def test_the_source_is_compared_by_value(asked: str) -> None:
    """"0:0::1" is "::1"; the kernel reports the source in its own spelling."""
    srv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srv.bind(("::1", 0))
    addr = (asked, srv.getsockname()[1])

    def echo() -> None:
        data, peer = srv.recvfrom(100)
        srv.sendto(data, peer)

    threading.Thread(target=echo, daemon=True).start()
    with srv, udp_socket(addr) as s:
        ex = Exchange(s, addr)
        assert ex.ask(b"v6", 2.0) == (True, 1)
        assert ex.strays == []


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


@pytest.mark.skipif(not can_unshare_net(), reason="a network namespace of its own needs root and unshare")
def test_vanished_clients_ports_taken_again_at_once_are_no_wrong_answer(tmp_path: Path) -> None:
    """udp.unreachable and udp.health close 64 clients before their answers come, then ask with
    a new client. With 71 ephemeral ports in all, that client would nearly always get a port
    one of them had, and the answer to it: a correct server must still pass."""
    from echoconf import registry

    binary = registry.find_binary("echo-epoll")
    if binary is None:
        pytest.skip(f"echo-epoll is not built ({registry.BUILD_HINT})")
    for _ in range(3):  # each try would have met a reused port with 64 chances in about 70
        proc = run_in_netns("run", "--builtin", "echo-epoll", "--case", "udp.unreachable", "--case", "udp.health",
                            "--report", str(tmp_path), "--no-summary",
                            setup="sysctl -qw net.ipv4.ip_local_port_range='40000 40070'", timeout=240)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert outcomes(load_report(tmp_path)) == {"udp.unreachable": "passed", "udp.health": "passed"}
