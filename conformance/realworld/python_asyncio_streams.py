#!/usr/bin/python3
"""TCP echo server with asyncio streams, in the style of the Python documentation's
"TCP echo server using streams" example (asyncio.start_server + serve_forever).

The documentation's example reads once and closes; an RFC 862 server echoes until the
client is done, so the handler loops until EOF, awaiting drain() after each write.

    python_asyncio_streams.py PORT
"""

import asyncio
import sys


async def handle_echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def main(port):
    server = await asyncio.start_server(handle_echo, '127.0.0.1', port)

    addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
    print(f'Serving on {addrs}', flush=True)

    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1])))
