"""The stream oracle's verdicts and sentences."""

from echoconf.client import FIN, RST, TIMEOUT
from echoconf.oracle import StreamCheck, first_difference


def test_first_difference() -> None:
    assert first_difference(b"abc", b"abc") is None
    assert first_difference(b"abc", b"ab") == 2
    assert first_difference(b"abc", b"abx") == 2
    big = bytes(range(256)) * 40000
    assert first_difference(big, big[:777777] + b"\x01" + big[777778:]) == 777777 + (big[777777] == 1)


def test_prefix_then_fin_is_a_shortfall() -> None:
    v = StreamCheck("10000 bytes then SHUT_WR", b"x" * 10000, b"x" * 9216, FIN,
                    shortfall_hint="output still queued when the client half-closed was dropped (FM-05)").verdict()
    assert v is not None
    assert v.detail["offset"] == 9216 and v.detail["received"] == 9216
    assert "only 9216 of 10000 bytes" in v.detail["message"] and "FM-05" in v.detail["message"]


def test_complete_but_reset_is_not_graceful() -> None:
    v = StreamCheck("x", b"abc", b"abc", RST).verdict()
    assert v is not None and "RST" in v.detail["message"]
    assert StreamCheck("x", b"abc", b"abc", FIN).verdict() is None


def test_never_closing_after_half_close() -> None:
    v = StreamCheck("x", b"abc", b"abc", TIMEOUT, deadline=1.0).verdict()
    assert v is not None and "never closed" in v.detail["message"]


def test_extra_bytes_and_cross_talk() -> None:
    v = StreamCheck("x", b"abc", b"abcZZZ", FIN).verdict()
    assert v is not None and "more than it received" in v.detail["message"]
    other = b"<client 7>" + b"q" * 100
    v = StreamCheck("x", b"<client 1>" + b"p" * 100, b"<client 1>" + b"p" * 10 + other[:40], FIN,
                    others=[other]).verdict()
    assert v is not None and "cross-talk" in v.detail["message"]


def test_nul_truncation_named() -> None:
    v = StreamCheck("x", b"ab\x00cd", b"ab", FIN).verdict()
    assert v is not None and "NUL" in v.detail["message"]


def test_skipped_bytes_named() -> None:
    import random

    exp = random.Random(1).randbytes(1024)
    v = StreamCheck("x", exp, exp[:100] + exp[300:], FIN).verdict()
    assert v is not None and "skipped" in v.detail["message"]


def test_nul_blamed_only_on_a_server_that_never_echoed_one() -> None:
    sentinel = b"<echoconf-sentinel>"
    data = b"\x00" * 1000 + b"abc"
    # A C-string server: the echo stops at the first NUL, the next write's bytes follow.
    v = StreamCheck("x", b"abc" + data + sentinel, b"abc" + sentinel, TIMEOUT).verdict()
    assert v is not None and "C string (FM-20)" in v.detail["message"]
    # NULs echoed, then a run of them lost before the sentinel: bytes skipped, not a C string.
    v = StreamCheck("x", data + sentinel, data[:400] + sentinel, TIMEOUT).verdict()
    assert v is not None and "skipped 603 bytes" in v.detail["message"], v.detail["message"]
    assert "C string" not in v.detail["message"]
