"""A streamed download during which the object is replaced (and the link maybe cut)."""

from __future__ import annotations

import pytest

from cloudrift.core.exceptions import StorageError
from cloudrift.storage import Storage
from tests.storage._proxy import CuttableProxy

#: Large enough that the body is still on its way when the link is cut (socket buffers
#: on loopback hold a few MiB).
SIZE = 32 * 1024 * 1024
OLD, NEW = b"o" * SIZE, b"n" * SIZE


async def stream_while_replaced(
    through: Storage, direct: Storage, proxy: CuttableProxy, *, replace: bool, cut: bool
) -> tuple[bytes, Exception | None]:
    """Stream ``key`` through the proxy; after the first chunk, replace it (directly) and
    cut every open link (the proxy keeps listening). Returns the bytes and the error."""
    await direct.upload("key", OLD)
    got: list[bytes] = []
    try:
        async for chunk in through.download_stream("key", chunk_size=64 * 1024):
            if not got:
                if replace:
                    await direct.upload("key", NEW)
                if cut:
                    await proxy.cut()
                    await proxy.restore()
            got.append(chunk)
    except Exception as exc:
        return b"".join(got), exc
    return b"".join(got), None


def assert_one_version(data: bytes, error: Exception | None) -> None:
    """The contract: the old version whole, or a prefix of it and an error; never new bytes."""
    assert NEW[:1] not in data, f"{data.count(NEW[:1])} bytes of the new version were delivered"
    assert OLD.startswith(data)
    assert error is not None or data == OLD


#: (replace, cut) cases of ``check_stream_while_replaced``, with readable test ids.
CASES = [
    pytest.param(True, False, id="replaced-between-chunks-keeps-the-old-version"),
    pytest.param(True, True, id="broken-after-a-replace-fails-saying-it-changed"),
    pytest.param(False, True, id="broken-but-unchanged-resumes-whole"),
]


async def check_stream_while_replaced(
    through: Storage, direct: Storage, proxy: CuttableProxy, *, replace: bool, cut: bool
) -> None:
    """The engine's promise for each case: replaced between chunks, the old version whole;
    broken after a replace, only old bytes and then StorageError ("changed while it was
    being downloaded"), never a resume on the new version; broken but unchanged, resumed
    (a ranged GET of the same ETag) and delivered whole."""
    data, error = await stream_while_replaced(through, direct, proxy, replace=replace, cut=cut)
    assert_one_version(data, error)
    if replace and cut:
        assert isinstance(error, StorageError) and "changed while" in str(error), error
    else:
        assert error is None and data == OLD, error
