#!/usr/bin/python3
"""TCP echo server with socketserver.ThreadingTCPServer, in the style of the Python
documentation's socketserver examples (a BaseRequestHandler subclass, a server used as a
context manager, serve_forever).

    python_socketserver.py PORT
"""

import socketserver
import sys


class EchoHandler(socketserver.BaseRequestHandler):
    """One thread per connection: echo every chunk until the client sends EOF."""

    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # restart at once, even with connections in TIME_WAIT
    daemon_threads = True
    # The default listen backlog is 5: a burst of connections overflows it and the extra
    # clients wait for a SYN retransmission (1 s, then 2 s, ...). See README.md.
    request_queue_size = 128


if __name__ == "__main__":
    HOST, PORT = "127.0.0.1", int(sys.argv[1])
    with EchoServer((HOST, PORT), EchoHandler) as server:
        server.serve_forever()
