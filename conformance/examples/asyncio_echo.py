#!/usr/bin/python3
"""A small, correct TCP echo server (RFC 862) in Python asyncio.

    python3 asyncio_echo.py --port 7007          # then: conformance/echoconf run --target 127.0.0.1:7007
    conformance/echoconf run --command "python3 conformance/examples/asyncio_echo.py --port {port}"

It follows the echoconf server contract (prints `listening ADDR PORT` when ready, exits 0 on
SIGTERM/SIGINT) and gets the subtle parts right:
- half-close: when the client sends FIN, everything read so far is written back, then our
  side is shut down (FIN), and only then is the connection closed;
- backpressure: `await drain()` stops reading while the peer is not reading;
- a client reset is a normal end of one connection, never of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import sys


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()  # bounded buffering: wait while the client does not read
        if writer.can_write_eof():
            writer.write_eof()  # the client half-closed: all its data is echoed, now our FIN
        await writer.drain()
    except (ConnectionError, OSError):
        pass  # a reset or vanished client ends this connection only
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def serve_connection(conn: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=conn)
    await handle(reader, writer)


async def accept_loop(lsock: socket.socket) -> None:
    """Our own accept loop: at the descriptor limit (EMFILE) asyncio's would pause and
    leave clients hanging; we free a reserve descriptor, accept and close instead.

    It waits for the listener to become readable and then accepts until EAGAIN. It never
    retries accept() on its own: at the limit accept() fails with EMFILE even when no
    client is waiting (the descriptor is allocated first), so a retry loop would spin
    without ever yielding to the connections already accepted."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    reserve: int | None = os.open(os.devnull, os.O_RDONLY)
    readable = asyncio.Event()
    fd = lsock.fileno()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            for _ in range(64):  # a bounded batch, then let the connections run
                try:
                    conn, _ = lsock.accept()
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno not in (errno.EMFILE, errno.ENFILE):
                        continue  # ECONNABORTED and friends concern one client only
                    if reserve is None:
                        try:
                            reserve = os.open(os.devnull, os.O_RDONLY)
                        except OSError:
                            await asyncio.sleep(0.05)  # still no descriptor: back off
                        break
                    os.close(reserve)
                    reserve = None
                    waiting = True
                    try:
                        lsock.accept()[0].close()  # tell the client at once instead of letting it hang
                    except OSError:
                        waiting = False  # nobody was: accept() failed for want of a descriptor only
                    try:
                        reserve = os.open(os.devnull, os.O_RDONLY)
                    except OSError:
                        pass
                    if not waiting:
                        break
                    continue
                conn.setblocking(False)
                # The loop keeps only weak references to tasks: hold them, or the garbage
                # collector may destroy a connection's handler in mid-echo.
                task = asyncio.create_task(serve_connection(conn))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                readable.set()  # more may be waiting: come back after the others ran
            await asyncio.sleep(0)
    finally:
        loop.remove_reader(fd)


async def serve(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(128)
    lsock.setblocking(False)
    print(f"listening {host} {lsock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    acceptor = asyncio.create_task(accept_loop(lsock))
    await stop.wait()
    acceptor.cancel()
    lsock.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7)
    args = p.parse_args()
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as e:
        print(f"asyncio_echo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
