"""udp.health: what a UDP echo server's process does under many clients, seen from outside when
the harness runs it: descriptors, memory, CPU. The answers themselves are test_udp.py's."""

from __future__ import annotations

import time

from echoconf.caselib import MiB, Ctx, case
from echoconf.oracle import CaseFailure, fail
from echoconf.steps import SPIN_LIMIT, runnable_during, with_death
from echoconf.target import Target, fd_count, proc_stat, stopped
from echoconf.udpclient import Exchange, udp_socket

from .test_udp import exact

CLIENTS, VANISHING = 512, 64
RSS_LIMIT = 16 * MiB  # 512 clients: 32 KiB each, where a correct server keeps nothing per client


def _settled_fds(pid: int, base: int, bound: float) -> int:
    """The descriptor count once it is back within 2 of `base`, or what it is after `bound` s."""
    until = time.monotonic() + bound
    count = fd_count(pid)
    while abs(count - base) > 2 and time.monotonic() < until:
        time.sleep(0.02)  # a server may still be closing; the verdict is the count
        count = fd_count(pid)
    return count


@case("udp.health", "robust", f"{CLIENTS} clients, each from its own port, get one answer each, and "
      f"{VANISHING} more vanish before theirs (the server stopped meanwhile, so ICMP port unreachable comes "
      "back): then the server holds no more descriptors than before (+-2), its RSS grew less than "
      f"{RSS_LIMIT >> 20} MiB, and no thread is runnable half of each of three idle windows",
      needs=["udp"], owned=True, timeout=90,
      grade="must", why="a descriptor or memory kept per client, or a socket error never cleared (a spin), "
      "ends a server that every new client costs; UDP clients come and go without a word")
def test_udp_health(server: Target, ctx: Ctx) -> None:
    pid = server.pid
    base_fds, base_rss = fd_count(pid), proc_stat(pid)["rss"]
    for i in range(CLIENTS):
        with udp_socket(server.addr) as s:
            try:
                exact(server, Exchange(s, server.addr), ctx.payload(1024, f"health/{i}"), f"Client {i + 1} of {CLIENTS}")
            except CaseFailure as e:
                raise with_death(server, e)
    # Answers to ports that are closed by the time they come: the kernel queues ICMP errors
    # for the server's socket, which a server must clear or never ask for. The next client's
    # socket is opened first: a port a vanished client had could be its port, and the late
    # answer to that client would reach it.
    with udp_socket(server.addr) as s:
        with stopped(pid):
            for i in range(VANISHING):
                with udp_socket(server.addr) as gone:
                    gone.sendto(ctx.payload(32, f"gone/{i}"), server.addr)
        exact(server, Exchange(s, server.addr), ctx.payload(100, "after"), "After clients vanished")
    busy = runnable_during(server, ctx.profile.cpu_window, SPIN_LIMIT)
    fds = _settled_fds(pid, base_fds, 2.0)
    rss = proc_stat(pid)["rss"] - base_rss
    if server.death():
        raise with_death(server, CaseFailure("The server died."))
    problems = []
    if busy >= SPIN_LIMIT:
        problems.append(f"a thread was runnable at least {busy:.0%} of each of three {ctx.profile.cpu_window:g} s "
                        f"windows with nothing to answer (limit {SPIN_LIMIT:.0%}): it busy-loops, as a server "
                        "does that polls a socket whose error queue it never reads (IP_RECVERR and POLLERR)")
    if abs(fds - base_fds) > 2:
        problems.append(f"it holds {fds - base_fds} more descriptors than before ({base_fds} -> {fds}): "
                        "a descriptor kept or leaked per client or per datagram")
    if rss >= RSS_LIMIT:
        problems.append(f"its memory (RSS) grew by {rss >> 20} MiB (limit {RSS_LIMIT >> 20} MiB): state kept per "
                        "client and never freed")
    if problems:
        fail(f"After {CLIENTS} clients and {VANISHING} that vanished: " + "; ".join(problems) + ".",
             runnable=round(busy, 3), fds_before=base_fds, fds_after=fds, rss_growth=rss)
