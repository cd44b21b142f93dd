#!/usr/bin/python3
"""A threaded echo server with one switchable bug, for testing the harness itself.

    badecho.py --port N [--bug none|nul|die-on-reset|drop-tail|one-client]

none          correct echo (half-close honoured)
nul           each read is cut at its first NUL byte (FM-20)
die-on-reset  a client reset kills the whole process with SIGPIPE (FM-07)
drop-tail     closes as soon as the client half-closes, dropping the last read (FM-05)
one-client    serves its first client, then exits (status 0) a moment after that client is done
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time


def serve(conn: socket.socket, bug: str) -> None:
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                conn.shutdown(socket.SHUT_WR)
                break
            if bug == "nul" and b"\0" in data:
                data = data[: data.index(b"\0")]
            if bug == "drop-tail" and len(data) < 65536:
                conn.settimeout(0.05)
                try:
                    more = conn.recv(1, socket.MSG_PEEK)
                except socket.timeout:
                    more = b"?"
                finally:
                    conn.settimeout(None)
                if not more:
                    break  # the client half-closed: drop what was just read
            conn.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        if bug == "die-on-reset":
            os.kill(os.getpid(), signal.SIGPIPE)  # default action (set in main): death
    finally:
        conn.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--bug", default="none", choices=["none", "nul", "die-on-reset", "drop-tail", "one-client"])
    args = p.parse_args()
    lsock = socket.create_server((args.host, args.port), reuse_port=False, backlog=128)
    print(f"listening {args.host} {lsock.getsockname()[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.bug == "die-on-reset":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args.bug == "one-client":
        conn, _ = lsock.accept()
        serve(conn, args.bug)
        # The client has its whole echo and our FIN; the exit comes after its last check.
        time.sleep(0.3)
        return 0
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=serve, args=(conn, args.bug), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
