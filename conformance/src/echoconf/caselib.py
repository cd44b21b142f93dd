"""What case modules use: the `case` declaration, run profiles and the per-run context."""

from __future__ import annotations

import hashlib
import random
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])
LEVELS = ("rfc862", "derived", "robust")
# The case families, in run order: a case id is FAMILY.NAME and lives in cases/test_FAMILY.py.
# docker.* judge a server container (--image) and run last: docker.alive judges the suite.
FAMILIES = ("echo", "partial", "close", "robust", "state", "udp", "docker")
# The grade says what a failure means; every case states its grade and why.
GRADES = {
    "must": "required: a failure makes the server non-conformant (exit 1)",
    "should": "recommended practice: a failure is reported as a recommendation not met "
              "(exit 0; exit 1 with --strict)",
}
KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class Fresh:
    """A private server instance a case starts (fixture fresh_server): `hold_fds` descriptors
    held open in its process, listening on `host` ("::": dual-stack), in a network namespace
    of its own with `sysctls`; the case's client sockets get `client_buffers`-byte buffers
    (locally they are made in that namespace and get them from its sysctls). `restarts`: the
    case kills it and starts it again on the same address, in the same network namespace (a
    container then needs a second one that keeps the namespace; a local process has it).
    `ahead`: it may be started before the case (under --image, in the background); False for a
    case that times the instance's start against its restart, under the same load.
    `addresses`: more addresses on the loopback of its network namespace (one of its own).
    `shared`: the case only exchanges data with it (no signal, limit, kill or measure of its
    process), so under --image the cases that declare instances alike but for `addresses` may
    take one container in turn."""

    hold_fds: int = 0
    host: str | None = None
    sysctls: tuple[tuple[str, str], ...] = ()
    addresses: tuple[str, ...] = ()
    client_buffers: int | None = None
    restarts: bool = False
    ahead: bool = True
    shared: bool = False

    @property
    def sysctl_map(self) -> dict[str, str]:
        return dict(self.sysctls)


def case(id: str, level: str, requirement: str, *, grade: str, why: str,
         fm: list[str] | None = None, needs: list[str] | None = None, owned: bool = False,
         timeout: float | Callable[[Profile], float] = 60, park: Callable[..., Any] | None = None,
         park_rank: int = 0, docker: bool = False, faults: bool = False,
         fresh: Fresh | None = None) -> Callable[[F], F]:
    """Declare a conformance case: a stable id, a level, a one-line requirement, and its
    grade (`must` or `should`, see GRADES) with the reason for that grade.

    MUST: losing, corrupting, reordering, duplicating or inventing bytes; closing before the
    client is done; leaving an accepted client hanging; one client blocking another; dying;
    leaking descriptors; spinning; unbounded memory; RFC 862 and what RFC 9293 implies for it.
    SHOULD: good practice and graceful degradation under contrived limits.

    Each case is one test function (variants such as sizes run inside it), so a case
    id maps to exactly one verdict in every report.

    `park(server, ctx) -> Parked` marks a case whose point is a wait on one connection
    (echo.pause): the plugin may open that connection early and let it wait while the
    cases that use private server instances run, then hand it to the case through the
    `parked` fixture. Cases with a lower `park_rank` are resumed first (a parked
    connection that holds the server's output must be resumed before the others).

    `timeout` is the case's hard bound (pytest-timeout), in seconds or as a function of the
    run's profile. It catches the harness itself stuck, never a slow server: each step of a
    case has its own bound, and a case that repeats steps (N connections one after another)
    gets at least the sum of their bounds, so that a correct server that is slow (a process
    forked per client on a loaded machine) is judged by its steps, as a fast one is.

    `docker` marks a case about the server's container (it runs under --image only);
    `faults` one that freezes, cuts off or kills it (only when the run asks for --faults).

    `fresh` is the private server instance the case starts (fixture fresh_server, which
    starts an `Fresh()` for a case that declares none). Declared here, it can be started
    before the case: under --image each takes a container start or two, which the harness
    starts in the background while the earlier cases run.
    """
    assert level in LEVELS, level
    assert grade in GRADES, grade
    assert why, f"{id}: say why it is graded {grade}"

    def deco(fn: F) -> F:
        marks = [pytest.mark.case(id=id, level=level, requirement=requirement, fm=list(fm or []),
                                  grade=grade, why=why)]
        # A bound that depends on the profile is set when the run's profile is known (plugin).
        marks.append(pytest.mark.timeout(timeout) if not callable(timeout) else
                     pytest.mark.bound(timeout))
        marks += [pytest.mark.needs(cap) for cap in needs or []]
        if owned:
            marks.append(pytest.mark.owned)
        if docker:
            marks.append(pytest.mark.docker)
        if faults:
            marks.append(pytest.mark.faults)
        if park is not None:
            marks.append(pytest.mark.parks(park, rank=park_rank))
        if fresh is not None:
            marks.append(pytest.mark.fresh(fresh))
        for m in marks:
            fn = m(fn)
        return fn

    return deco


def declared_instance(item: pytest.Item) -> Fresh | None:
    """The private instance the case declares (`case(fresh=...)`), or None."""
    m = item.get_closest_marker("fresh")
    return m.args[0] if m is not None else None


@dataclass(frozen=True)
class Profile:
    name: str
    large: int  # echo.large
    flush_sizes: tuple[int, ...]  # close.half-close-flush
    pause: float  # echo.pause: the idle pause mid-connection
    idle: float  # close.no-early-close: the idle time with the echo owed
    sequential: int  # echo.sequential
    concurrent: int  # echo.concurrent
    cycles: int  # robust.fd-leak
    cpu_window: float
    chunking_examples: int
    machine_examples: int
    machine_steps: int


PROFILES = {
    "quick": Profile("quick", 16 * MiB, (1, 1023, 1024, 10000, MiB), pause=2.0, idle=2.0,
                     sequential=500, concurrent=64, cycles=400, cpu_window=0.5,
                     chunking_examples=25, machine_examples=10, machine_steps=20),
    "default": Profile("default", 64 * MiB, (1, 1023, 1024, 10000, MiB, 16 * MiB), pause=2.0,
                       idle=2.0, sequential=1000, concurrent=100, cycles=1000, cpu_window=1.0,
                       chunking_examples=50, machine_examples=15, machine_steps=25),
    "thorough": Profile("thorough", 64 * MiB, (1, 1023, 1024, 10000, MiB, 16 * MiB, 64 * MiB),
                        pause=5.0, idle=4.0, sequential=2000, concurrent=200, cycles=2000,
                        cpu_window=2.0, chunking_examples=400, machine_examples=150,
                        machine_steps=40),
}


@dataclass
class Parked:
    """A connection that is waiting on purpose (see `case(park=...)`): the socket, when
    its idle time began, which server instance it belongs to, and case-specific state."""

    sock: Any
    since: float
    instance: Any = None
    state: dict[str, Any] = field(default_factory=dict)

    def idled(self) -> float:
        return time.monotonic() - self.since

    def wait(self, seconds: float) -> float:
        """Sleep the rest of `seconds` since the idle time began; return the idle time.
        The wait is the point of the case; its verdict comes from the bytes that follow."""
        rest = seconds - self.idled()
        if rest > 0:
            time.sleep(rest)
        return self.idled()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class Ctx:
    """Per-case context: the run's profile, seed and the implementation's capabilities."""

    profile: Profile
    seed: int
    capabilities: frozenset[str]
    case_id: str = ""

    @property
    def concurrent(self) -> bool:
        return "concurrent" in self.capabilities

    def rng(self, salt: str = "") -> random.Random:
        """Every random choice derives from the run seed and the case id: --seed replays it."""
        return random.Random(self.seed * 1_000_003 + zlib.crc32(f"{self.case_id}/{salt}".encode()))

    def payload(self, n: int, salt: str = "") -> bytes:
        """n seeded pseudo-random bytes. Payloads from 1 MiB to the pool size are windows of
        one per-run pool (made once: 64 MiB cost a third of a CPU-second even from SHAKE, over
        twice that from random.Random); a window is chosen by the case id, salt and size, and
        never repeats within itself."""
        if n < MiB or n > POOL_SIZE:
            return self.rng(f"payload/{salt}/{n}").randbytes(n)
        pool = _pool(self.seed)
        start = self.rng(f"payload/{salt}/{n}").randrange(len(pool) - n + 1)
        return pool[start:start + n]


POOL_SIZE = 64 * MiB
_POOLS: dict[int, bytes] = {}


def _pool(seed: int) -> bytes:
    if seed not in _POOLS:
        _POOLS.clear()
        _POOLS[seed] = hashlib.shake_128(f"echoconf payload pool {seed}".encode()).digest(POOL_SIZE)
    return _POOLS[seed]
