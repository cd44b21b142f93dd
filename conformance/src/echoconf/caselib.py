"""What case modules use: the `case` declaration, run profiles and the per-run context."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])
LEVELS = ("rfc862", "derived", "robust")
KiB = 1024
MiB = 1024 * 1024


def case(id: str, level: str, requirement: str, fm: list[str] | None = None,
         needs: list[str] | None = None, owned: bool = False, timeout: float = 60) -> Callable[[F], F]:
    """Declare a conformance case: a stable id, a level and a one-line requirement.

    Each case is one test function (variants such as sizes run inside it), so a case
    id maps to exactly one verdict in every report.
    """
    assert level in LEVELS, level

    def deco(fn: F) -> F:
        marks = [pytest.mark.case(id=id, level=level, requirement=requirement, fm=list(fm or [])),
                 pytest.mark.timeout(timeout)]
        marks += [pytest.mark.needs(cap) for cap in needs or []]
        if owned:
            marks.append(pytest.mark.owned)
        for m in marks:
            fn = m(fn)
        return fn

    return deco


@dataclass(frozen=True)
class Profile:
    name: str
    large: int  # echo.large
    flush_sizes: tuple[int, ...]  # close.half-close-flush
    pause: float  # echo.pause
    sequential: int
    cycles: int  # robust.fd-leak
    cpu_window: float
    chunking_examples: int
    machine_examples: int
    machine_steps: int


PROFILES = {
    "quick": Profile("quick", 16 * MiB, (1, 1023, 1024, 10000, MiB), 1.0, 500, 400, 0.5, 25, 10, 20),
    "default": Profile("default", 64 * MiB, (1, 1023, 1024, 10000, MiB, 16 * MiB), 3.0, 500, 1000,
                       1.0, 50, 20, 25),
    "thorough": Profile("thorough", 64 * MiB, (1, 1023, 1024, 10000, MiB, 16 * MiB, 64 * MiB), 5.0,
                        1000, 2000, 2.0, 400, 150, 40),
}


@dataclass
class Ctx:
    """Per-case context: the run's profile, seed and the implementation's capabilities."""

    profile: Profile
    seed: int
    capabilities: frozenset[str]
    case_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def concurrent(self) -> bool:
        return "concurrent" in self.capabilities

    def rng(self, salt: str = "") -> random.Random:
        """Every random choice derives from the run seed and the case id: --seed replays it."""
        return random.Random(self.seed * 1_000_003 + zlib.crc32(f"{self.case_id}/{salt}".encode()))

    def payload(self, n: int, salt: str = "") -> bytes:
        return self.rng(f"payload/{salt}/{n}").randbytes(n)

    def note(self, text: str) -> None:
        self.notes.append(text)
