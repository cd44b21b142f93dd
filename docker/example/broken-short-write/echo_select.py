#!/usr/bin/python3
"""A select() echo server with one classic bug: it ignores send()'s return value on a
non-blocking socket, so when the kernel takes only part of a chunk the rest is silently lost.
Everything else is done right: dual-stack listener, bounded buffer per connection (it stops
reading at 64 KiB pending), half-close (FIN after the last byte), resets survived, at the
descriptor limit a reserve descriptor accepts and closes the clients it cannot serve (no spin on
a listener it cannot accept from), a connection on a descriptor select() cannot watch (1024 and
up) is closed at once, SIGTERM ends it with status 0. With ordinary socket buffers, select() reports a socket writable only when a
whole 4 KiB chunk fits, so the bug hides; with 4 KiB kernel buffers nearly every send is short.

    echo_select.py [--host ADDR] [--port N]      prints `listening ADDR PORT` when ready
"""
import argparse
import errno
import os
import select
import signal
import socket
import sys

CHUNK = 4096
BOUND = 64 * 1024
FD_SETSIZE = 1024  # select() takes no descriptor from here up (glibc's fd_set)


def listener(host: str, port: int) -> socket.socket:
    try:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if ":" in host:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    except OSError:  # no IPv6 in this namespace: IPv4 only
        s, host = socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    s.setblocking(False)
    return s


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="::")
    p.add_argument("--port", type=int, default=7)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lsock = listener(a.host, a.port)
    addr = lsock.getsockname()
    print(f"listening {addr[0]} {addr[1]}", flush=True)
    pending: dict[socket.socket, bytearray] = {}
    eof: set[socket.socket] = set()
    reserve = os.open(os.devnull, os.O_RDONLY)

    def drop(c: socket.socket) -> None:
        pending.pop(c, None)
        eof.discard(c)
        c.close()

    while True:
        readers = [lsock] + [c for c, buf in pending.items() if c not in eof and len(buf) < BOUND]
        writers = [c for c, buf in pending.items() if buf]
        readable, writable, _ = select.select(readers, writers, [])
        for c in readable:
            if c is lsock:
                try:
                    conn, _ = lsock.accept()
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE):
                        # Out of descriptors: free the reserve one to take the client and close it.
                        os.close(reserve)
                        try:
                            lsock.accept()[0].close()
                        except OSError:
                            pass
                        reserve = os.open(os.devnull, os.O_RDONLY)
                    continue
                if conn.fileno() >= FD_SETSIZE:
                    conn.close()  # select() cannot watch it
                    continue
                conn.setblocking(False)
                pending[conn] = bytearray()
                continue
            if c not in pending:
                continue
            try:
                data = c.recv(CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                drop(c)
                continue
            if data:
                pending[c] += data
            else:
                eof.add(c)
        for c in writable:
            buf = pending.get(c)
            if not buf:
                continue
            try:
                c.send(bytes(buf[:CHUNK]))  # BUG: the return value (bytes taken) is ignored
            except BlockingIOError:
                continue
            except OSError:
                drop(c)
                continue
            del buf[:CHUNK]
        for c in [c for c in eof if not pending.get(c)]:
            try:
                c.shutdown(socket.SHUT_WR)  # FIN after the last byte: the half-close is honoured
            except OSError:
                pass
            drop(c)


if __name__ == "__main__":
    sys.exit(main())
