"""Stream oracle: compares what was sent with what came back, as byte streams.

Read boundaries never matter. The verdict says where the streams first differ, shows
both sides around that offset, how the connection ended, and one sentence a user
understands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from . import client
from .client import FIN, OPEN, RST, TIMEOUT


class CaseFailure(AssertionError):
    """A conformance failure with a structured detail for the report."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail: dict[str, Any] = {"message": message, **detail}


def snippet(data: bytes, offset: int, width: int = 16) -> str:
    """Hex and printable view of data[offset-width : offset+width], marking the offset."""
    lo = max(0, offset - width)
    hi = min(len(data), offset + width)
    before, after = data[lo:offset], data[offset:hi]
    return (f"@{lo}: {before.hex(' ')} | {after.hex(' ')}" if before or after else "(nothing)") + \
        f"  {_printable(before)!s}|{_printable(after)!s}"


def _printable(b: bytes) -> str:
    return "".join(chr(c) if 32 <= c < 127 else "." for c in b)


def first_difference(expected: bytes, observed: bytes) -> int | None:
    """Offset of the first differing byte, len(shorter) when one is a strict prefix,
    None when equal. Binary search on slices keeps this fast for 64 MiB streams."""
    n = min(len(expected), len(observed))
    if expected[:n] == observed[:n]:
        return None if len(expected) == len(observed) else n
    lo, hi = 0, n
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        if expected[lo:mid] == observed[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, hi):
        if expected[i] != observed[i]:
            return i
    return hi


ENDINGS = {FIN: "closed the connection (FIN)", RST: "reset the connection (RST)",
           TIMEOUT: "then sent nothing more before the deadline", OPEN: "kept the connection open"}


@dataclass
class StreamCheck:
    """Everything needed to judge and explain one stream."""

    what: str  # e.g. "10000 bytes then SHUT_WR"
    expected: bytes
    observed: bytes
    end: str
    sent: int | None = None
    graceful_end: bool = True  # the stream must be complete and end with FIN
    shortfall_hint: str = ""  # explanation when a correct prefix came back, then it ended
    others: Sequence[bytes] = field(default_factory=tuple)  # other clients' data (cross-talk)
    deadline: float | None = None

    def verdict(self) -> CaseFailure | None:
        exp, obs = self.expected, self.observed
        sent = len(exp) if self.sent is None else self.sent
        off = first_difference(exp, obs)
        base = dict(expected=snippet(exp, off or 0), observed=snippet(obs, off or 0),
                    offset=off, sent=sent, received=len(obs), end=self.end, scenario=self.what)
        if off is None:
            if self.graceful_end and self.end != FIN:
                how = ENDINGS[self.end]
                hint = "; a reset can make the client lose data it has not read yet (FM-06)" \
                    if self.end == RST else ""
                msg = (f"All {len(obs)} bytes came back but then the server {how} instead of "
                       f"closing gracefully with FIN after the client half-closed{hint}.")
                if self.end == TIMEOUT:
                    msg = (f"All {len(obs)} bytes came back but the server never closed its side "
                           f"after the client half-closed (no FIN {self._within()}): "
                           "half-close is not completed (FM-05, FM-19).")
                return CaseFailure(msg, **base)
            return None
        if off < len(obs) and off < len(exp):
            return CaseFailure(self._wrong_byte(off, exp, obs), **base)
        if len(obs) > len(exp):
            extra = obs[len(exp):len(exp) + 16]
            return CaseFailure(
                f"The server sent back {len(obs) - len(exp)} bytes more than it received "
                f"(starting {extra!r} at offset {len(exp)}): stale buffer contents or another "
                "client's data leaked into this stream (FM-21).", **base)
        # A correct, strict prefix, then the stream ended.
        missing = len(exp) - len(obs)
        how = ENDINGS[self.end]
        if self.end == TIMEOUT:
            how = f"then stopped: nothing more arrived {self._within()}"
        nul_hint = ""
        if exp[len(obs)] == 0 and 0 not in exp[:len(obs)]:
            nul_hint = " The echo stops exactly at the first NUL byte: the server treats data as a C string (FM-20)."
        msg = (f"The server sent back only {len(obs)} of {len(exp)} bytes ({missing} missing) and "
               f"{how}" + (f": {self.shortfall_hint}" if self.shortfall_hint else "") + "." + nul_hint)
        return CaseFailure(msg, **base)

    def _within(self) -> str:
        bound = client.HANG_BOUND
        deadline = (self.deadline or 0) * client.TIME_SCALE  # what the client really waited
        if bound and (self.deadline is None or bound < deadline):
            return f"for {bound:g} s (the run's --hang-bound)"
        return f"within {deadline:g} s"

    def _wrong_byte(self, off: int, exp: bytes, obs: bytes) -> str:
        window = obs[off:off + 32]
        for i, other in enumerate(self.others):
            if len(window) >= 8 and window[:16] in other:
                return (f"At byte {off} the echo contains data another client (#{i}) sent: "
                        "cross-talk between connections (FM-21).")
        # A server that treats data as a C string never sends a NUL: one that already echoed
        # NUL bytes and then diverges at one lost data some other way (a short write, often).
        if exp[off] == 0 and obs[off] != 0 and 0 not in obs[:off]:
            return (f"At byte {off}, where the data holds a NUL byte, the echo diverges "
                    f"(0x{obs[off]:02x} came instead): the server cuts or drops data at NUL bytes, "
                    "treating it as a C string (FM-20).")
        if obs[off] == 0 and exp[off] != 0 and not any(obs[off:off + 64]):
            return (f"From byte {off} on the server sent zeros instead of the data: it lost "
                    f"the bytes after {exp[off - 1:off]!r} (FM-20, FM-01).")
        if window and window in exp[:off]:
            return (f"At byte {off} the server repeated data it had already echoed: a partial write "
                    "was retried from the old offset (FM-02).")
        if window and window in exp[off + 1:]:
            skipped = exp.find(window, off + 1) - off
            return (f"At byte {off} the server skipped {skipped} bytes and went on with later data: "
                    "a short write was treated as complete (FM-01).")
        return (f"At byte {off} the server sent 0x{obs[off]:02x} where 0x{exp[off]:02x} was expected: "
                "the echo is corrupted.")


def check_stream(what: str, expected: bytes, observed: bytes, end: str, **kw: Any) -> None:
    failure = StreamCheck(what, expected, observed, end, **kw).verdict()
    if failure is not None:
        raise failure


def fail(message: str, **detail: Any) -> None:
    raise CaseFailure(message, **detail)
