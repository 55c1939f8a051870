"""A TCP proxy on a loopback port whose link to the server can be cut and restored."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from cloudrift.core.exceptions import StorageConnectionError
from cloudrift.storage import Storage
from cloudrift.storage.base import MIN_PART_SIZE
from tests.servers._process import LOOPBACK


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` drops every connection and stops
    listening (new connections are refused), ``restore()`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    @classmethod
    async def to(cls, url: str) -> CuttableProxy:
        """A started proxy to the host and port of ``url`` (its path is the caller's)."""
        target = urlsplit(url)
        return await cls(target.hostname or "", target.port or 0).start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> CuttableProxy:
        """Listen (on a free port the first time, on the same port afterwards)."""
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Stop listening and reset every open connection, as a dead link would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def restore(self) -> None:
        """Accept connections again on the same port."""
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A connection accepted just before a cut must die with it (one once survived
        # the cut and carried a whole upload through it): refused if the cut came
        # before this handler ran, registered at once (cut() aborts it while the server
        # side is still being opened), and dropped if the cut came while it was opening.
        accepted_by = self._server
        if accepted_by is None:  # accepted just before a cut, handled after it
            writer.transport.abort()
            return
        self._links.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            self._links.discard(writer)
            writer.transport.abort()
            return
        if self._server is not accepted_by or writer not in self._links:
            for w in (writer, up_writer):
                self._links.discard(w)
                w.transport.abort()
            return
        self._links.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._links.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


async def upload_cut_midway(
    storage: Storage, proxy: CuttableProxy, key: str
) -> StorageConnectionError:
    """Stream three parts to ``key`` through ``proxy``, cutting the link before the third:
    the upload must fail with StorageConnectionError, which is returned."""
    part = os.urandom(MIN_PART_SIZE)

    async def source() -> AsyncIterator[bytes]:
        yield part
        yield part
        await proxy.cut()
        yield part

    with pytest.raises(StorageConnectionError) as caught:
        await storage.upload_stream(key, source(), part_size=MIN_PART_SIZE)
    return caught.value
