"""Fault injection for cache tests: a TCP proxy that simulates a Redis failover.

:class:`FailoverProxy` listens on a free loopback port and sends each new client
connection to the next upstream in its list, staying on the last one. Pointing the
first at a *replica* and the second at the primary reproduces what clients of a
managed Redis see after a failover: the connection they hold reaches the demoted
node (which answers writes with ``-READONLY``) and a new connection reaches the
new primary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from tests.servers._process import LOOPBACK


class FailoverProxy:
    """Routes the n-th accepted connection to ``upstreams[min(n, last)]``."""

    def __init__(self, upstreams: Sequence[int]) -> None:
        self.upstreams = list(upstreams)
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FailoverProxy:
        """Listen on a free 127.0.0.1 port."""
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.upstreams[min(self.connections, len(self.upstreams) - 1)]
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        both = [
            asyncio.create_task(pump(reader, up_writer)),
            asyncio.create_task(pump(up_reader, writer)),
        ]
        self._tasks.update(both)
        await asyncio.gather(*both, return_exceptions=True)
        self._tasks.difference_update(both)

    async def stop(self) -> None:
        """Stop listening and cut every proxied connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def failover_proxy() -> AsyncIterator[type[FailoverProxy]]:
    """Build FailoverProxy instances in the test's loop; all are stopped afterwards."""
    made: list[FailoverProxy] = []

    class Tracked(FailoverProxy):
        def __init__(self, upstreams: Sequence[int]) -> None:
            super().__init__(upstreams)
            made.append(self)

    yield Tracked
    for proxy in made:
        await proxy.stop()
