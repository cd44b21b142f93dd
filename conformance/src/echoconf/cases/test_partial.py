"""partial.*: short reads and short writes (RFC 9293 §3.7: no message boundaries)."""

from __future__ import annotations

from typing import Callable

from echoconf.caselib import KiB, MiB, Ctx, Fresh, case
from echoconf.client import Deadline, Flow, chunked, connect, exchange
from echoconf.netns import TINY_BUFFERS
from echoconf.steps import SENTINEL, distinct, judge, roundtrip
from echoconf.target import OwnedServer, Target

SHORT_WRITE = "output the server could not write at once was lost: a short write was treated as complete (FM-01)"


@case("partial.one-byte-writes", "derived", "4096 1-byte writes with TCP_NODELAY, reading concurrently: "
      "exact", fm=["FM-01"],
      grade="must", why="short reads are normal TCP (RFC 9293): every byte must still come back")
def test_one_byte_writes(server: Target, ctx: Ctx) -> None:
    data = ctx.payload(4096)
    roundtrip(server, [data[i:i + 1] for i in range(len(data))], "4096 one-byte writes with TCP_NODELAY",
              nodelay=True, deadline=10)


@case("partial.slow-reader", "derived", "8 MiB written while the client does not read (SO_RCVBUF 4 KiB), "
      "then read in 4 KiB pieces with small pauses: exact", fm=["FM-01", "FM-02"], timeout=90,
      grade="must", why="short writes are normal TCP: dropping or repeating their rest corrupts the echo")
def test_slow_reader(server: Target, ctx: Ctx) -> None:
    data = ctx.payload(8 * MiB)
    roundtrip(server, chunked(data, 256 * KiB), "8 MiB sent to a client that first does not read, then "
              "reads 4 KiB at a time", rcvbuf=4 * KiB, hold_reads=True, recv_size=4 * KiB,
              pause_every=512 * KiB, pause=0.005, deadline=20, hint=SHORT_WRITE)


@case("partial.burst-half-close", "derived", "1 MiB + 1 byte in one sendall then SHUT_WR: full echo and "
      "EOF within 5 s", fm=["FM-16"],
      grade="must", why="after the client's FIN the echo is still owed (RFC 9293 half-close)")
def test_burst_half_close(server: Target, ctx: Ctx) -> None:
    # The odd byte makes the server's last read of the stream shorter than its buffer, whatever
    # its buffer size: a server that echoes its buffer's length instead of the read's fails
    # every time, not only when its reads happen to vary.
    roundtrip(server, [ctx.payload(MiB + 1)], "1 MiB + 1 byte in one write, then SHUT_WR", deadline=5,
              half_close=True,
              hint="data left in kernel buffers was never drained: edge-triggered readiness not read to "
              "EAGAIN, or the half-close ended the connection early (FM-16, FM-05)")


@case("partial.many-interleaved", "robust", "50 clients (SO_RCVBUF 4 KiB) x 256 KiB at once: all exact "
      "within 10 s",
      fm=["FM-16"], needs=["concurrent"],
      grade="must", why="each of many concurrent streams must come back exact: bytes lost under load are lost")
def test_many_interleaved(server: Target, ctx: Ctx) -> None:
    payloads = [distinct(i, 256 * KiB, ctx.seed) for i in range(50)]
    # Small receive windows make the server's writes come back short on every run, not
    # only when the clients happen to fall behind.
    socks = [connect(server.addr, 2.0, rcvbuf=4 * KiB, factory=server.factory()) for _ in payloads]
    try:
        flows = [Flow(s, [*chunked(p, 16 * KiB), SENTINEL], shut_wr=False) for s, p in zip(socks, payloads)]
        exchange(flows, Deadline(10.0))
    finally:
        for s in socks:
            s.close()
    for i, f in enumerate(flows):
        judge(server, f, f"client {i} of 50 clients sending 256 KiB at once", deadline=10.0,
              others=[p for j, p in enumerate(payloads) if j != i],
              hint="a connection stalled with data pending (FM-16)")


@case("partial.tiny-buffers", "derived", "the server in its own network namespace with tcp_wmem/tcp_rmem "
      "of 4 KiB: 1 MiB + 1 byte, read once the sends stall, echo + half-close exact, then FIN", fm=["FM-01"],
      owned=True, timeout=90, fresh=Fresh(sysctls=tuple(TINY_BUFFERS.items()), client_buffers=4 * KiB),
      grade="must", why="with small socket buffers nearly every write is short: the echo must still be exact")
def test_tiny_buffers(fresh_server: Callable[[], OwnedServer], ctx: Ctx) -> None:
    srv = fresh_server()
    # The odd byte, as in partial.burst-half-close: some read of the stream is shorter than
    # the server's buffer, whatever its size, on every run. The client reads only once its
    # sends stall: the server's socket buffer is then full, and its next write is short on
    # every run. Reading from the start, a client that keeps up (a busy CPU slows the server
    # more than the client) let every write go through whole, and a server that ignores a
    # short write's count passed. The hold, not the size, makes the writes short: 1 MiB keeps
    # a correct Python server well inside the bound on a busy CPU (4 MiB through these
    # buffers took it over 20 s at a load average of 20).
    roundtrip(srv, chunked(ctx.payload(MiB + 1), 64 * KiB), "1 MiB + 1 byte through 4 KiB kernel "
              "socket buffers, read once the sends stall (the server's writes are short), then SHUT_WR",
              deadline=20, hold_reads=True,
              hint=SHORT_WRITE[:-1] + ", or output queued at the client's half-close was dropped (FM-05)",
              half_close=True)
