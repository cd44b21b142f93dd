#!/usr/bin/python3
"""A userspace link delay: two TUN devices, every IP packet read from one is written to the
other DELAY later (and the other way round), unchanged and in order. test_slow_link.py uses
it because this kernel has no sch_netem (`tc … netem` is "unknown qdisc"); the rate limit is
the kernel's own `tbf` on each TUN device, so this only adds the propagation delay.

    delay_relay.py TUN_A TUN_B --delay-ms 25 [--lifetime 180] [--max-queue 20000]

Creates TUN_A and TUN_B (IFF_TUN, no packet info) in the current network namespace and prints
`ready` once they exist: the caller then moves them into namespaces of its own (`ip link set
TUN netns NS`; the open descriptors stay attached) and configures them. Ends on SIGTERM or
SIGINT, when stdin reaches EOF (its parent went away), or after --lifetime seconds at most;
the devices vanish with it. Packets beyond --max-queue in flight are dropped, as a router
would: memory stays bounded.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import selectors
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("tun_a")
    p.add_argument("tun_b")
    p.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay added to every packet")
    p.add_argument("--lifetime", type=float, default=180.0, help="exit after this many seconds at most")
    p.add_argument("--max-queue", type=int, default=20000, help="packets in flight before drops")
    args = p.parse_args()
    delay = args.delay_ms / 1000.0
    a, b = open_tun(args.tun_a), open_tun(args.tun_b)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)  # read from a, deliver into b
    sel.register(b, selectors.EVENT_READ, a)
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    print("ready", flush=True)
    queue: list[tuple[float, int, int, bytes]] = []
    seq = 0
    dropped = 0
    end = time.monotonic() + args.lifetime
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        wait = min(end - now, max(0.0, queue[0][0] - now) if queue else 0.5)
        for key, _ in sel.select(wait):
            if key.data is None:  # stdin: EOF means the parent is gone
                if not os.read(key.fd, 4096):
                    stop = True
                continue
            for _ in range(256):  # drain what is there, boundedly
                try:
                    pkt = os.read(key.fd, 65536)
                except BlockingIOError:
                    break
                if len(queue) >= args.max_queue:
                    dropped += 1
                    continue
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, key.data, pkt))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, pkt = heapq.heappop(queue)
            try:
                os.write(fd, pkt)
            except OSError:
                dropped += 1  # the device is down or gone: the packet is lost, as on a wire
    print(f"relayed {seq - dropped} packets, dropped {dropped}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
