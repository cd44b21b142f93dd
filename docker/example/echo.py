import asyncio, signal, sys
async def echo(r, w):
    try:
        while data := await r.read(65536): w.write(data); await w.drain()  # drain: bounded buffer
        w.write_eof(); await w.drain()                                    # half-close: FIN after the last byte
    except ConnectionError: pass                                          # a reset ends this client only
    finally: w.close()
async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, sys.exit, 0)
    server = await asyncio.start_server(echo, None, 7, reuse_address=True)  # None: every address, v4 and v6
    print("listening", *server.sockets[0].getsockname()[:2], flush=True); await server.serve_forever()
asyncio.run(main())
