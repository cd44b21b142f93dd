"""UDP echo server in the style of the Python docs' "UDP Echo Server" example (asyncio
DatagramProtocol, loop.create_datagram_endpoint), on 127.0.0.1 and the port given.

    python3 python_asyncio_udp.py PORT
"""

import asyncio
import sys


class EchoServerProtocol:
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main(port):
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: EchoServerProtocol(), local_addr=("127.0.0.1", port))
    try:
        await asyncio.Future()  # serve forever
    finally:
        transport.close()


asyncio.run(main(int(sys.argv[1])))
