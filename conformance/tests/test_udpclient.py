"""udpclient.Exchange: late answers are owed answers, never wrong or extra ones."""

from __future__ import annotations

import socket
import threading
import time

from echoconf.udpclient import Exchange, udp_socket


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
