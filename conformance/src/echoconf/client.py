"""Client-side socket helpers. Every operation has a deadline; none can block forever.

The central piece is `exchange`: one selector loop that drives any number of
connections at once, writing each payload (in the caller's chunking) while reading
the echo concurrently, so a server with bounded buffers never deadlocks against us.
How each stream ended is recorded as FIN, RST or timeout.
"""

from __future__ import annotations

import errno
import functools
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

Addr = tuple[str, int]

FIN = "FIN"
RST = "RST"
TIMEOUT = "timeout"
OPEN = "open"


# The hang bound (`echoconf run --hang-bound S`): a stream on which nothing moves for S
# seconds ends as a timeout before its deadline. None: each operation waits out its deadline.
# Deadlines only bound hangs (a correct server finishes long before them), so the bound
# changes how long a hanging server takes to fail, not what passes.
HANG_BOUND: float | None = None

# The time scale (`echoconf run --time-scale F`, or measured for a remote target: see
# pathscale.py). Every wait that bounds network work is multiplied by it: each Deadline,
# connect timeouts, and the stall that tells a peer which stopped reading. Not scaled:
# sleeps that are a case's point or pace it (pauses, idle times), CPU measuring windows,
# and the hang bound (the user's own "nothing moved for S seconds"). 1.0 for a server on
# loopback or owned by the harness, so local runs are unchanged.
TIME_SCALE: float = 1.0


def wait_for(deadline: "Deadline") -> float:
    """How long one blocking step may wait: what is left of the deadline, at most the hang bound."""
    left = deadline.remaining()
    return min(left, HANG_BOUND) if HANG_BOUND else left


class Deadline:
    """A point in monotonic time; `remaining()` never goes below zero. `seconds` is the
    nominal deadline: it is multiplied by the run's TIME_SCALE."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds * TIME_SCALE
        self.end = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def literal_family(host: str) -> int | None:
    """AF_INET or AF_INET6 when `host` is an address literal, None for a name."""
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, host)
            return fam
        except (OSError, ValueError):
            pass
    return None


# Names resolved once per run: (host, port) -> [(family, sockaddr)] in getaddrinfo order.
_RESOLVED: dict[tuple[str, int], list[tuple[int, tuple]]] = {}


def resolve(addr: Addr) -> list[tuple[int, tuple]]:
    """The (family, sockaddr) pairs a connection to `addr` tries in turn, as
    socket.create_connection does: a literal is itself; a name is resolved (getaddrinfo,
    any family) the first time and remembered for the run, so every case connects alike.
    Raises socket.gaierror when a name does not resolve."""
    host, port = addr[0], addr[1]
    fam = literal_family(host)
    if fam is not None:
        return [(fam, tuple(addr))]
    key = (host, int(port))
    if key not in _RESOLVED:
        found: list[tuple[int, tuple]] = []
        for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, socket.AF_UNSPEC,
                                                             socket.SOCK_STREAM):
            if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in found:
                found.append((family, sockaddr))
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
        _RESOLVED[key] = found
    return _RESOLVED[key]


SocketFactory = Callable[[int], socket.socket]


def _plain_socket(family: int) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM)


def connect(
    addr: Addr,
    timeout: float = 2.0,
    *,
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
    nodelay: bool = False,
    factory: SocketFactory | None = None,
) -> socket.socket:
    """Connect with a deadline (times the TIME_SCALE). Buffer sizes are set before connect so
    the window scale fits. A name is tried address by address, like socket.create_connection
    (each attempt with the whole timeout); if none connects, the first error is raised."""
    timeout = timeout * TIME_SCALE
    first: OSError | None = None
    for family, sockaddr in resolve(addr):
        sock = (factory or _plain_socket)(family)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            sock.settimeout(timeout)
            return sock
        except OSError as e:
            sock.close()
            first = first or e
        except BaseException:
            sock.close()
            raise
    assert first is not None
    raise first


def reset(sock: socket.socket) -> None:
    """Abort the connection: SO_LINGER {1, 0} makes close() send RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def finish(sock: socket.socket, timeout: float = 3.0, cap: float = 20.0) -> None:
    """Leave a connection gracefully: SHUT_WR, drain the echo to EOF, close. Falls back to
    RST if the server does not finish in time. Cleanup after a stalled client uses this, so
    that the next case does not inherit a reset (and a SIGPIPE-prone server its death).

    In time: nothing arriving for `timeout` seconds ends the wait, echo still arriving does
    not, up to `cap`. Megabytes queued for a client with a 4 KiB window drain in a fraction
    of a second on an idle machine and in several seconds on a loaded one; a fixed total
    would reset the connection there, and a server killed by that reset would be charged a
    death it did not cause on an idle machine."""
    try:
        sock.shutdown(socket.SHUT_WR)
        hard = Deadline(cap)
        while True:
            got = read_to_eof(sock, Deadline(min(timeout, max(0.001, hard.remaining()))), limit=1 << 30)
            end = got.end
            if end != TIMEOUT or not got.data or hard.expired():
                break
    except OSError:
        end = RST
    if end == FIN:
        sock.close()
    else:
        reset(sock)


def send_all(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    view = memoryview(data)
    while view:
        sock.settimeout(max(0.001, wait_for(deadline)))
        if deadline.expired():
            raise TimeoutError(f"send stalled with {len(view)} bytes unsent")
        n = sock.send(view)
        view = view[n:]


@dataclass
class Received:
    data: bytes
    end: str  # FIN, RST, timeout, or open (we stopped reading because we had enough)

    def __len__(self) -> int:
        return len(self.data)


def recv_exactly(sock: socket.socket, n: int, deadline: Deadline) -> Received:
    """Read exactly n bytes unless the stream ends or the deadline passes first."""
    buf = bytearray()
    while len(buf) < n:
        if deadline.expired():
            return Received(bytes(buf), TIMEOUT)
        sock.settimeout(max(0.001, wait_for(deadline)))
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except (socket.timeout, TimeoutError):
            return Received(bytes(buf), TIMEOUT)
        except ConnectionResetError:
            return Received(bytes(buf), RST)
        if not chunk:
            return Received(bytes(buf), FIN)
        buf += chunk
    return Received(bytes(buf), OPEN)


def read_to_eof(sock: socket.socket, deadline: Deadline, limit: int = 1 << 30) -> Received:
    """Read until FIN, RST or the deadline: tells the three endings apart."""
    buf = bytearray()
    while len(buf) <= limit:
        if deadline.expired():
            return Received(bytes(buf), TIMEOUT)
        sock.settimeout(max(0.001, wait_for(deadline)))
        try:
            chunk = sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            return Received(bytes(buf), TIMEOUT)
        except ConnectionResetError:
            return Received(bytes(buf), RST)
        if not chunk:
            return Received(bytes(buf), FIN)
        buf += chunk
    return Received(bytes(buf), OPEN)


@dataclass
class Flow:
    """One connection's traffic plan and what came of it."""

    sock: socket.socket
    chunks: Sequence[bytes]
    shut_wr: bool = True
    cork: bool = False  # TCP_CORK: the FIN rides on the last data segment (no race with it)
    recv_size: int = 1 << 18
    # Pacing of the reader (a slow consumer). Pacing never decides a verdict.
    hold_reads: bool = False  # do not read until the sender stalls
    pause_every: int = 0  # bytes read between pauses
    pause: float = 0.0
    owed: int = 0  # bytes sent before this flow whose echo this flow reads first
    # Results.
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    end: str = OPEN
    send_error: str | None = None
    _chunk: int = 0
    _off: int = 0
    _next_pause_at: int = 0
    _last_progress: float = 0.0
    _done_writing: bool = False

    @functools.cached_property
    def total(self) -> int:
        """Bytes to send (the chunks are the plan: they do not change once the flow is made);
        asked after every read of an exchange, so counted once."""
        return sum(len(c) for c in self.chunks)

    @property
    def data(self) -> bytes:
        return bytes(self.received)


def exchange(flows: Sequence[Flow], deadline: Deadline, stall: float = 0.1) -> None:
    """Drive every flow: write its chunks, read concurrently, SHUT_WR when asked.

    A flow finishes at EOF/RST, or (when it does not half-close) once it has read back
    as many bytes as it sent. Unfinished flows end as `timeout` at the deadline.
    `stall` only paces hold_reads flows: how long the send side must make no
    progress before the reader starts (times the TIME_SCALE: a slow path stalls longer).
    """
    stall = stall * TIME_SCALE
    sel = selectors.DefaultSelector()
    try:
        for f in flows:
            f.sock.setblocking(False)
            f._last_progress = time.monotonic()
            if f.cork:
                f.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            if not f.chunks or f.total == 0:
                _finish_writing(f)
            sel.register(f.sock, _events(f), f)
        active = len(flows)
        moved = time.monotonic()  # last time any byte moved (for the hang bound)
        holding = False
        while active:
            remaining = deadline.remaining()
            if remaining <= 0:
                break
            now = time.monotonic()
            # While a reader holds back on purpose, the silence is the client's own doing: the
            # hang bound counts from when every reader reads (on a slow path the hold, times
            # the TIME_SCALE, can outlast the bound).
            holding, held = any(f.hold_reads for f in flows), holding
            if held and not holding:
                moved = now
            if HANG_BOUND and not holding and now - moved >= HANG_BOUND:
                break
            timeout = min(remaining, stall / 2 if holding else remaining)
            if HANG_BOUND and not holding:
                timeout = min(timeout, max(0.001, moved + HANG_BOUND - now))
            for key, mask in sel.select(timeout):
                f: Flow = key.data
                before = (f.sent, len(f.received), f.end)
                if mask & selectors.EVENT_WRITE and not f._done_writing:
                    _write_some(f)
                if mask & selectors.EVENT_READ and f.end == OPEN and _may_read(f, now, stall):
                    _read_some(f)
                if (f.sent, len(f.received), f.end) != before:
                    moved = time.monotonic()
                if f.end != OPEN or (not f.shut_wr and f._done_writing
                                     and len(f.received) >= f.owed + f.total):
                    sel.unregister(f.sock)
                    active -= 1
                else:
                    sel.modify(f.sock, _events(f), f)
            now = time.monotonic()
            for key in list(sel.get_map().values()):
                f = key.data
                if f.hold_reads and _may_read(f, now, stall):
                    sel.modify(f.sock, _events(f), f)
        for key in list(sel.get_map().values()):
            f = key.data
            if f.end == OPEN:
                f.end = TIMEOUT
    finally:
        sel.close()
        for f in flows:
            try:
                f.sock.setblocking(True)
            except OSError:
                pass


def _events(f: Flow) -> int:
    ev = 0
    if not f._done_writing:
        ev |= selectors.EVENT_WRITE
    if f.end == OPEN and _may_read(f, time.monotonic(), None):
        ev |= selectors.EVENT_READ
    return ev or selectors.EVENT_READ


def _may_read(f: Flow, now: float, stall: float | None) -> bool:
    """A hold_reads flow starts reading once its sender is done or has stalled."""
    if not f.hold_reads:
        return True
    if f._done_writing or (stall is not None and now - f._last_progress >= stall):
        f.hold_reads = False
        return True
    return False


def _finish_writing(f: Flow) -> None:
    f._done_writing = True
    if f.shut_wr:
        try:
            f.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _write_some(f: Flow) -> None:
    progressed = False
    while f._chunk < len(f.chunks):
        chunk = f.chunks[f._chunk]
        if not chunk:
            f.sock.send(b"")  # a real zero-length write reaches the kernel
            f._chunk += 1
            continue
        try:
            n = f.sock.send(memoryview(chunk)[f._off:])
        except BlockingIOError:
            break
        except (BrokenPipeError, ConnectionResetError) as e:
            f.send_error = type(e).__name__
            f.end = RST
            f._done_writing = True
            return
        progressed = True
        f.sent += n
        f._off += n
        if f._off >= len(chunk):
            f._chunk += 1
            f._off = 0
            if len(f.chunks) > 1:
                break  # one chunk per turn keeps the clients interleaved
        else:
            break
    if progressed:
        f._last_progress = time.monotonic()
    if f._chunk >= len(f.chunks):
        _finish_writing(f)


def _read_some(f: Flow) -> None:
    if f.pause_every and len(f.received) >= f._next_pause_at + f.pause_every:
        # A slow consumer: pacing only, it never decides a verdict.
        f._next_pause_at = len(f.received)
        time.sleep(f.pause)
    try:
        chunk = f.sock.recv(f.recv_size)
    except BlockingIOError:
        return
    except ConnectionResetError:
        f.end = RST
        return
    except OSError as e:
        if e.errno in (errno.ECONNRESET, errno.EPIPE):
            f.end = RST
            return
        raise
    if not chunk:
        f.end = FIN
        return
    f.received += chunk


STARVED = 0.1  # of a stall window spent waiting for a CPU: the server had no turn to read


def fill_until_stall(sock: socket.socket, limit: int, deadline: Deadline, stall: float = 0.3,
                     block: int = 1 << 16, pattern: bytes | None = None,
                     waited: WorkMeter | None = None) -> int:
    """Send up to `limit` bytes without reading; stop when the send side makes no progress
    for `stall` seconds (the peer stopped reading). Returns the number of bytes accepted.
    The stall only ends the filling; callers judge by byte counts, never by the wait.
    The stall is times the TIME_SCALE: on a slow path the peer's window opens more slowly.

    `waited` (the server's Target.work_meter(waiting_only=True)) confirms a stall: for one
    more `stall` the server must neither take bytes nor wait for a CPU (a tenth of it at
    most). On a busy machine a server that had no turn for a while has not stopped reading;
    taken for one that has, it went on reading and writing after the caller's next step."""
    stall = stall * TIME_SCALE
    payload = pattern if pattern is not None else b"\xa5" * block
    sent = 0
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_WRITE)
    try:
        while sent < limit and not deadline.expired():
            want = min(len(payload), limit - sent)
            try:
                n = sock.send(memoryview(payload)[:want])
                sent += n
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            if not sel.select(min(stall, deadline.remaining())):
                if waited is None:
                    break  # no progress for `stall`: the peer stopped reading
                waited()
                if sel.select(min(stall, deadline.remaining())):
                    continue
                if waited() <= STARVED * stall or deadline.expired():
                    break  # it had its turns and took nothing: it stopped reading
    finally:
        sel.close()
        sock.setblocking(True)
    return sent


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


# A connect that waits for this long outlasts the first SYN retransmission (after 1 s).
SYN_RETRY = 2.0
# While the server's own processes are busy (see `probe`), the probe waits for its echo this
# long at most (nominal, times the TIME_SCALE), in steps of its timeout.
WORK_LIMIT = 10.0
# Busy: runnable (on a CPU or queued for one) at least this fraction of a step. A server that
# waits for an event it missed is runnable almost never; one working through forks, exits
# or a backlog on a loaded machine is runnable, or queued, most of the time.
BUSY = 0.1

# Seconds the server's processes were runnable since the previous call (an owned server's
# Target.work_meter()).
WorkMeter = Callable[[], float]


def probe(addr: Addr, timeout: float = 1.0, factory: SocketFactory | None = None,
          work: WorkMeter | None = None) -> str | None:
    """The liveness probe: a fresh client connects (within 2 s, or `timeout` if longer) and sends
    b"ping", and must get b"ping" back within `timeout` seconds.
    Returns None when it passes, else a sentence saying what happened. `timeout` is nominal:
    times the TIME_SCALE, like every network wait (the sentences give the real wait).

    With `work` (a server the harness runs), a server that is still busy when `timeout` has
    passed gets another `timeout`, and so on while it stays busy, up to WORK_LIMIT: a server
    that forks a process per client, on a loaded machine, may need seconds to work through
    the clients and exits ahead of the probe's, and is slow, not stuck. A server that stopped
    working without answering fails at `timeout` as before; under --hang-bound (the user's
    own "nothing moved for S seconds") the probe never waits longer."""
    # The connect may take one SYN retransmission (1 s): a server with a small listen backlog
    # that is still accepting can have a full queue for a moment, and the kernel drops the SYN.
    connect_bound = max(timeout, SYN_RETRY)
    if work is not None:
        work()  # the busy time counts from here
    t0 = time.monotonic()
    try:
        sock = connect(addr, connect_bound, factory=factory)
    except ConnectionRefusedError:
        return "a fresh client's connection was refused (nothing listens any more)"
    except (TimeoutError, socket.timeout):
        return f"a fresh client could not connect within {connect_bound * TIME_SCALE:g} s"
    except OSError as e:
        return f"a fresh client could not connect: {e}"
    d = Deadline(timeout)
    try:
        try:
            send_all(sock, b"ping", d)
        except OSError as e:
            return f"a fresh client could not send: {e}"
        got = recv_exactly(sock, 4, d)
        data, step, extended = got.data, t0, False
        limit = Deadline(WORK_LIMIT)
        while got.end == TIMEOUT and work is not None and not HANG_BOUND and not limit.expired():
            now = time.monotonic()
            if work() < BUSY * (now - step):
                break  # idle: it is waiting for something it missed
            step, extended = now, True
            got = recv_exactly(sock, 4 - len(data), Deadline(timeout))
            data += got.data
        if data == b"ping":
            return None
        how = {FIN: "the server closed the connection", RST: "the connection was reset",
               TIMEOUT: f"nothing more came within {d.seconds:g} s", OPEN: ""}[got.end]
        if extended and got.end == TIMEOUT:
            waited = time.monotonic() - d.end + d.seconds
            how = (f"nothing more came within {waited:.3g} s, and the server's processes were still busy"
                   if limit.expired() else f"nothing more came within {waited:.3g} s: the server's processes "
                   "were busy for a while, then went idle without answering")
        return f"a fresh client sent b'ping' and got {data!r} back ({how})"
    finally:
        sock.close()


def can_connect(addr: Addr, timeout: float = 0.2, factory: SocketFactory | None = None) -> bool:
    try:
        connect(addr, timeout, factory=factory).close()
        return True
    except OSError:
        return False
