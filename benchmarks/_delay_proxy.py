"""A loopback TCP proxy adding network latency, run as its own process by
:func:`benchmarks._servers.delay_proxy`.

``python _delay_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT ROUND_TRIP_SECONDS``

Every byte crossing the proxy, either way, arrives half the round trip after it was
sent (a delay line: a chunk read at ``t`` is written at ``t + round_trip / 2``, in
order), so a request answered at once costs one full round trip, as over a real
network. Accepting the client's connection costs nothing: the stand-ins close every
connection (moto answers ``Connection: close``), while a real client keeps its
connections to the service alive, so a handshake round trip per request would charge
the stand-in's quirk to the client. In its own process, the proxy's CPU is not
counted as the measured client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _carry(src: asyncio.StreamReader, dst: asyncio.StreamWriter, one_way: float) -> None:
    """Copy ``src`` to ``dst``, each chunk ``one_way`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while chunk := await src.read(65536):
                line.put_nowait((loop.time() + one_way, chunk))
        except OSError:
            pass
        line.put_nowait((loop.time() + one_way, b""))  # end of stream, delayed too

    reader = asyncio.create_task(read())
    try:
        while True:
            due, chunk = await line.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                break
            dst.write(chunk)
            await dst.drain()
    except OSError:
        reader.cancel()
    finally:
        with contextlib.suppress(OSError):
            if dst.can_write_eof():
                dst.write_eof()
        await asyncio.gather(reader, return_exceptions=True)


async def _main(listen: int, host: str, port: int, round_trip: float) -> None:
    one_way = round_trip / 2

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                _carry(reader, up_writer, one_way), _carry(up_reader, writer, one_way)
            )
        finally:
            writer.close()
            up_writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", listen, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen_port, target_host, target_port, seconds = sys.argv[1:5]
    asyncio.run(_main(int(listen_port), target_host, int(target_port), float(seconds)))
