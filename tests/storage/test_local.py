"""The local provider: conformance, atomic writes, root confinement and signed URLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidKeyError,
    StorageError,
    StoragePermissionError,
)
from cloudrift.core.secrets import Secret
from cloudrift.storage import Storage, get_storage
from cloudrift.storage.local import LocalStorage
from tests.conformance.storage import StorageConformance, agen
from tests.storage._presign_server import presign_server

SIGNING_KEY = "local-signing-key-for-tests-0123456789"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, type]]:
    """A real HTTP server that verifies and serves LocalStorage's signed URLs (per module)."""
    with presign_server() as pair:
        yield pair


class TestLocalStorage(StorageConformance):
    """Conformance harness: files under a temp folder, signed URLs served over HTTP."""

    secrets_in_use = (SIGNING_KEY,)

    @pytest.fixture
    async def backend(self, tmp_path: Path, served: tuple[str, type]) -> AsyncIterator[Storage]:
        """A local backend rooted in an empty temp folder, its URLs served by a test server."""
        base_url, handler = served
        storage = get_storage(
            "local", root_dir=tmp_path / "root", base_url=base_url, signing_key=SIGNING_KEY
        )
        handler.storage = storage
        try:
            yield storage
        finally:
            await storage.close()


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalStorage]:
    """A local backend with base_url and a known signing key."""
    storage = LocalStorage(
        root_dir=tmp_path / "root", base_url="http://files.test/f/", signing_key=SIGNING_KEY
    )
    try:
        yield storage
    finally:
        await storage.close()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_presigned_url_has_the_agreed_shape(local: LocalStorage) -> None:
    """The URL is base_url + quoted key + method, expires, signature (+ content_type)."""
    before = int(time.time())
    url = await local.presigned_url(
        "a b/ü.txt", expires_in=60, method="PUT", content_type="text/plain"
    )
    assert url.startswith("http://files.test/f/" + quote("a b/ü.txt", safe="/") + "?method=PUT&")
    q = _query(url)
    assert before + 60 <= int(q["expires"]) <= int(time.time()) + 60
    assert len(q["signature"]) == 64 and q["content_type"] == "text/plain"
    local.verify_presigned(
        "a b/ü.txt",
        method="PUT",
        expires=int(q["expires"]),
        signature=q["signature"],
        content_type="text/plain",
    )


async def test_tampered_signature_is_refused(local: LocalStorage) -> None:
    """A changed signature, key, method or content type raises StoragePermissionError."""
    url = await local.presigned_url("k.txt", content_type="text/plain")
    q = _query(url)
    exp, sig = int(q["expires"]), q["signature"]
    bad_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    cases = [
        {
            "key": "k.txt",
            "method": "GET",
            "expires": exp,
            "signature": bad_sig,
            "content_type": "text/plain",
        },
        {
            "key": "other.txt",
            "method": "GET",
            "expires": exp,
            "signature": sig,
            "content_type": "text/plain",
        },
        {
            "key": "k.txt",
            "method": "PUT",
            "expires": exp,
            "signature": sig,
            "content_type": "text/plain",
        },
        {
            "key": "k.txt",
            "method": "GET",
            "expires": exp + 1000,
            "signature": sig,
            "content_type": "text/plain",
        },
        {
            "key": "k.txt",
            "method": "GET",
            "expires": exp,
            "signature": sig,
            "content_type": "text/html",
        },
        {"key": "k.txt", "method": "GET", "expires": exp, "signature": sig, "content_type": None},
    ]
    for case in cases:
        key = case.pop("key")
        with pytest.raises(StoragePermissionError, match="signature does not match"):
            local.verify_presigned(key, **case)  # type: ignore[arg-type]


async def test_expired_signature_is_refused_as_expired(local: LocalStorage) -> None:
    """A correctly signed URL past its expiry raises StoragePermissionError saying it expired."""
    expires = int(time.time()) - 5
    sig = local._signature("k", "GET", expires, None)
    with pytest.raises(StoragePermissionError, match="expired"):
        local.verify_presigned("k", method="GET", expires=expires, signature=sig)


async def test_url_from_another_signing_key_is_refused(tmp_path: Path, local: LocalStorage) -> None:
    """A backend with a different signing key refuses the URL; one with the same key accepts it."""
    url = await local.presigned_url("k")
    q = _query(url)
    other = LocalStorage(root_dir=tmp_path / "root", signing_key="a-different-key")
    same = LocalStorage(root_dir=tmp_path / "root", signing_key=Secret(SIGNING_KEY))
    with pytest.raises(StoragePermissionError):
        other.verify_presigned(
            "k", method="GET", expires=int(q["expires"]), signature=q["signature"]
        )
    same.verify_presigned("k", method="GET", expires=int(q["expires"]), signature=q["signature"])


async def test_random_signing_key_differs_per_instance(tmp_path: Path) -> None:
    """Without signing_key each instance signs with its own random key."""
    a = LocalStorage(root_dir=tmp_path, base_url="http://x/")
    b = LocalStorage(root_dir=tmp_path, base_url="http://x/")
    assert a._signature("k", "GET", 1, None) != b._signature("k", "GET", 1, None)


async def test_served_tampered_and_expired_urls_get_403(
    tmp_path: Path, served: tuple[str, type]
) -> None:
    """Over real HTTP, a tampered or expired URL is refused with 403 and the good one works."""
    base_url, handler = served
    storage = LocalStorage(root_dir=tmp_path / "r", base_url=base_url, signing_key=SIGNING_KEY)
    handler.storage = storage
    await storage.upload("doc.txt", b"secret doc")
    url = await storage.presigned_url("doc.txt", expires_in=60)
    expires = int(time.time()) - 1
    expired = (
        f"{base_url}doc.txt?method=GET&expires={expires}"
        f"&signature={storage._signature('doc.txt', 'GET', expires, None)}"
    )
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).content == b"secret doc"
        tampered = await client.get(url.replace("doc.txt", "doc2.txt", 1))
        late = await client.get(expired)
    assert tampered.status_code == 403 and late.status_code == 403
    assert b"expired" in late.content


async def test_presign_without_base_url_says_to_set_it(tmp_path: Path) -> None:
    """Without base_url, presigned_url raises FeatureNotSupportedError naming base_url."""
    storage = LocalStorage(root_dir=tmp_path)
    with pytest.raises(FeatureNotSupportedError, match="base_url"):
        await storage.presigned_url("k")


async def test_signing_key_never_appears_in_repr(local: LocalStorage) -> None:
    """repr shows provider and root, never the signing key."""
    text = repr(local)
    assert "local" in text and "root_dir=" in text and SIGNING_KEY not in text


async def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    """A symlinked folder leading outside root_dir can be neither read nor written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    root = tmp_path / "root"
    storage = LocalStorage(root_dir=root)
    os.symlink(outside, root / "link")
    with pytest.raises(StoragePermissionError, match="outside root_dir"):
        await storage.download("link/secret.txt")
    with pytest.raises(StoragePermissionError, match="outside root_dir"):
        await storage.upload("link/new.txt", b"x")
    assert os.listdir(outside) == ["secret.txt"]


async def test_symlinked_file_out_of_root_is_refused(tmp_path: Path) -> None:
    """A symlinked file pointing outside root_dir is not served."""
    (tmp_path / "passwd").write_bytes(b"root:x:0:0")
    root = tmp_path / "root"
    storage = LocalStorage(root_dir=root)
    os.symlink(tmp_path / "passwd", root / "passwd")
    with pytest.raises(StoragePermissionError):
        await storage.download("passwd")


async def test_plain_put_replaces_a_symlink_at_the_key_never_writing_through_it(
    tmp_path: Path,
) -> None:
    """A plain upload onto a key that is a symlink leading out replaces the link with the
    object (the outside file is untouched); a conditional one refuses the key."""
    (tmp_path / "passwd").write_bytes(b"root:x:0:0")
    root = tmp_path / "root"
    storage = LocalStorage(root_dir=root)
    os.symlink(tmp_path / "passwd", root / "passwd")
    with pytest.raises(StoragePermissionError, match="outside root_dir"):
        await storage.upload("passwd", b"new", if_not_exists=True)
    await storage.upload("passwd", b"new")
    assert not (root / "passwd").is_symlink()
    assert await storage.download("passwd") == b"new"
    assert (tmp_path / "passwd").read_bytes() == b"root:x:0:0"


async def test_symlink_deeper_in_the_key_leading_out_is_refused(tmp_path: Path) -> None:
    """A symlink two folders down, leading out, is refused for writes, reads and exists."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    root = tmp_path / "root"
    storage = LocalStorage(root_dir=root)
    await storage.upload("a/b/kept.txt", b"in")
    os.symlink(outside, root / "a" / "b" / "link")
    for call in (
        storage.upload("a/b/link/new.txt", b"x"),
        storage.download("a/b/link/secret.txt"),
        storage.exists("a/b/link/secret.txt"),
    ):
        with pytest.raises(StoragePermissionError, match="outside root_dir"):
            await call
    assert os.listdir(outside) == ["secret.txt"]


async def test_symlink_leading_elsewhere_inside_the_root_is_followed(tmp_path: Path) -> None:
    """A symlinked folder pointing to another folder inside root_dir reads and writes there."""
    root = tmp_path / "root"
    storage = LocalStorage(root_dir=root)
    await storage.upload("real/one.txt", b"1")
    os.symlink(root / "real", root / "alias")
    await storage.upload("alias/two.txt", b"2")
    assert await storage.download("alias/one.txt") == b"1"
    assert (root / "real" / "two.txt").read_bytes() == b"2"


async def test_plain_operations_do_not_resolve_paths_with_realpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a symlink in the key's path, put/get/head/exists/delete never call realpath
    (it lstats every component from '/', in Python: the largest cost of a small put)."""
    storage = LocalStorage(root_dir=tmp_path / "root")

    def no_realpath(path: object, **_: object) -> str:
        raise AssertionError(f"realpath({path!r}) on the hot path")

    monkeypatch.setattr(os.path, "realpath", no_realpath)
    await storage.upload("deep/er/k.bin", b"x" * 1024)
    await storage.upload("deep/er/k.bin", b"y" * 1024, metadata={"m": "v"})
    assert await storage.download("deep/er/k.bin") == b"y" * 1024
    assert (await storage.head("deep/er/k.bin")).metadata == {"m": "v"}
    assert await storage.exists("deep/er/k.bin") and not await storage.exists("deep/no")
    await storage.delete("deep/er/k.bin")


async def test_dotdot_keys_never_touch_files_outside_root(tmp_path: Path) -> None:
    """'..' keys are rejected, so nothing is written next to root_dir."""
    storage = LocalStorage(root_dir=tmp_path / "root")
    for key in ["../escape.txt", "a/../../escape.txt"]:
        with pytest.raises(InvalidKeyError):
            await storage.upload(key, b"x")
    assert not (tmp_path / "escape.txt").exists()


async def test_reserved_internal_folder_is_not_a_key(tmp_path: Path) -> None:
    """Keys under '.cloudrift/' are refused and the folder never shows in listings."""
    storage = LocalStorage(root_dir=tmp_path)
    await storage.upload("meta.txt", b"x", metadata={"a": "b"})
    with pytest.raises(InvalidKeyError, match="reserved"):
        await storage.upload(".cloudrift/tmp/x", b"x")
    assert await storage.list() == ["meta.txt"]


async def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    """After uploads, streams and a failed stream, only the objects remain (no temp files)."""
    storage = LocalStorage(root_dir=tmp_path)

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("boom")

    await storage.upload("a.bin", b"a")
    await storage.upload_stream("b.bin", agen(b"b"))
    with pytest.raises(RuntimeError):
        await storage.upload_stream("c.bin", broken())
    assert os.listdir(tmp_path / ".cloudrift" / "tmp") == []
    files = sorted(e.name for e in os.scandir(tmp_path) if e.is_file())
    assert files == ["a.bin", "b.bin"]


async def test_object_and_prefix_with_the_same_name_conflict(tmp_path: Path) -> None:
    """A key that is also another key's folder raises StorageError explaining the conflict."""
    storage = LocalStorage(root_dir=tmp_path)
    await storage.upload("a", b"file")
    with pytest.raises(StorageError, match="conflicts"):
        await storage.upload("a/b", b"x")
    await storage.delete("a")
    await storage.upload("a/b", b"x")
    with pytest.raises(StorageError, match="conflicts"):
        await storage.upload("a", b"x")


async def test_delete_prunes_empty_folders(tmp_path: Path) -> None:
    """Deleting the last key in a folder removes the folder, freeing the name for a key."""
    storage = LocalStorage(root_dir=tmp_path)
    await storage.upload("x/y/z", b"1")
    await storage.delete("x/y/z")
    assert not (tmp_path / "x").exists()
    await storage.upload("x", b"now a file")
    assert await storage.download("x") == b"now a file"


def test_missing_root_dir_is_a_configuration_error() -> None:
    """get_storage('local') without root_dir fails naming the option."""
    with pytest.raises(ConfigurationError, match="root_dir"):
        get_storage("local", root_dir="")


def test_misspelled_option_is_a_configuration_error(tmp_path: Path) -> None:
    """A typo in an option name is refused with a suggestion."""
    with pytest.raises(ConfigurationError, match="did you mean 'base_url'"):
        get_storage("local", root_dir=tmp_path, base_ur="http://x")


def test_bad_base_url_is_a_configuration_error(tmp_path: Path) -> None:
    """A base_url that is not an http(s) URL or absolute path is refused."""
    with pytest.raises(ConfigurationError, match="base_url"):
        get_storage("local", root_dir=tmp_path, base_url="files.example")


async def test_listing_skips_symlinks_leading_out_of_root(tmp_path: Path) -> None:
    """A symlinked file pointing outside root_dir is not listed (its size is not leaked)."""
    (tmp_path / "outside.bin").write_bytes(b"x" * 99)
    storage = LocalStorage(root_dir=tmp_path / "root")
    await storage.upload("inside.txt", b"in")
    os.symlink(tmp_path / "outside.bin", tmp_path / "root" / "leak.bin")
    assert await storage.list() == ["inside.txt"]


_KILLED_WRITER = """
import asyncio, sys
from cloudrift.storage.local import LocalStorage

async def main() -> None:
    storage = LocalStorage(root_dir=sys.argv[1])
    if sys.argv[2] == "upload":
        await storage.upload("big.bin", b"x" * 256_000_000)
        return
    if sys.argv[2] == "replace":
        await storage.upload("big.bin", b"n" * 256_000_000, metadata={"version": "new"})
        return

    async def endless():
        while True:
            yield b"x" * 1_000_000
            await asyncio.sleep(0)

    await storage.upload_stream("big.bin", endless())

asyncio.run(main())
"""


def _temp_files(root: Path) -> list[Path]:
    """Every temporary file under ``root`` (beside objects or in .cloudrift/tmp)."""
    beside = [f for f in root.rglob(".cloudrift-tmp-*") if f.is_file()]
    return beside + [f for f in (root / ".cloudrift" / "tmp").glob("*") if f not in beside]


def _writing(root: Path, before: int | None) -> bool:
    """Whether a writer of ``big.bin`` is under way: a temp file has data, or ``big.bin``
    itself is no longer ``before`` bytes long (a writer that writes in place)."""
    if any(f.stat().st_size > 0 for f in _temp_files(root)):
        return True
    try:
        return (root / "big.bin").stat().st_size not in (before, 256_000_000)
    except FileNotFoundError:
        return False


def _kill_mid_write(root: Path, how: str) -> list[Path]:
    """Start a writer of ``big.bin`` in a child process and SIGKILL it once it is writing
    (see ``_writing``); returns the temp files it left."""
    try:
        before: int | None = (root / "big.bin").stat().st_size
    except FileNotFoundError:
        before = None
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(root), how],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while not _writing(root, before):
            if child.poll() is not None:
                break  # the write finished first: the object must then be complete
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return _temp_files(root)


async def test_writer_killed_mid_replace_leaves_the_previous_object_whole(tmp_path: Path) -> None:
    """A writer SIGKILLed while replacing an object leaves the previous version, bytes and
    metadata, untouched (or, if the write won the race, the new one complete)."""
    root = tmp_path / "root"
    storage = LocalStorage(root_dir=root)
    old = bytes(range(256)) * 4096  # 1 MiB, not a prefix of the new content
    await storage.upload("big.bin", old, metadata={"version": "old"})
    left = _kill_mid_write(root, "replace")
    fresh = LocalStorage(root_dir=root)
    info = await fresh.head("big.bin")
    if left or info.size != 256_000_000:
        assert await fresh.download("big.bin") == old
        assert info.metadata == {"version": "old"}
    else:  # the write finished before the kill: it is whole
        assert info.size == 256_000_000 and info.metadata == {"version": "new"}
        assert await fresh.download("big.bin", start=255_999_999) == b"n"
    assert await fresh.list() == ["big.bin"]


@pytest.mark.parametrize("how", ["upload_stream", "upload"])
async def test_writer_killed_mid_write_leaves_no_torn_object_and_its_temp_is_cleaned(
    tmp_path: Path, how: str
) -> None:
    """A writer SIGKILLed mid-write leaves no object; the next store removes its stale temp."""
    root = tmp_path / "root"
    LocalStorage(root_dir=root)
    left = _kill_mid_write(root, how)
    fresh = LocalStorage(root_dir=root)  # default age: a minute-old temp file may be live
    assert all(f.exists() for f in left)
    if left:
        assert not await fresh.exists("big.bin") and await fresh.list() == []
    else:  # the plain upload won the race against the kill: it is whole
        assert (await fresh.head("big.bin")).size == 256_000_000
    hour_ago = time.time() - 3601
    for f in left:
        os.utime(f, (hour_ago, hour_ago))
    reopened = LocalStorage(root_dir=root)
    assert not any(f.exists() for f in left)
    assert await reopened.list() == []


async def test_temp_file_max_age_is_configurable(tmp_path: Path) -> None:
    """temp_file_max_age=0 removes every temp file at open (beside objects and in
    .cloudrift/tmp) and nothing else; a negative age is refused."""
    root = tmp_path / "root"
    LocalStorage(root_dir=root)
    (root / "deep" / "er").mkdir(parents=True)
    strays = [root / ".cloudrift" / "tmp" / "stray", root / "deep" / "er" / ".cloudrift-tmp-x"]
    for stray in strays:
        stray.write_bytes(b"half")
    (root / "deep" / "kept.bin").write_bytes(b"an object")
    LocalStorage(root_dir=root, temp_file_max_age=60)
    assert all(stray.exists() for stray in strays)
    LocalStorage(root_dir=root, temp_file_max_age=0)
    assert not any(stray.exists() for stray in strays)
    assert (root / "deep" / "kept.bin").exists()
    with pytest.raises(ConfigurationError, match="temp_file_max_age"):
        LocalStorage(root_dir=root, temp_file_max_age=-1)


async def test_temp_files_are_written_beside_the_target_and_never_listed(tmp_path: Path) -> None:
    """A write's temp file sits in the target's folder; listings skip temp files, and keys
    that look like one are refused."""
    storage = LocalStorage(root_dir=tmp_path / "root")
    seen: list[str] = []

    async def source() -> AsyncIterator[bytes]:
        seen.extend(p.parent.name for p in (tmp_path / "root").rglob(".cloudrift-tmp-*"))
        yield b"x"

    await storage.upload("folder/k", b"first")
    await storage.upload_stream("folder/streamed", source())
    assert seen == ["folder"]
    (tmp_path / "root" / "folder" / ".cloudrift-tmp-left").write_bytes(b"half")
    assert await storage.list() == ["folder/k", "folder/streamed"]
    with pytest.raises(InvalidKeyError, match="reserves"):
        await storage.upload("folder/.cloudrift-tmp-x", b"x")


async def test_empty_folder_left_by_a_failed_write_does_not_block_a_key(tmp_path: Path) -> None:
    """An empty folder (left by a write that failed) is replaced by an object of its name."""
    storage = LocalStorage(root_dir=tmp_path / "root")
    (tmp_path / "root" / "a").mkdir()
    await storage.upload("a", b"object")
    assert await storage.download("a") == b"object"
    await storage.upload("b/c", b"x")
    with pytest.raises(StorageError, match="conflicts"):
        await storage.upload("b", b"not over a folder with keys")


_INCREMENTER = """
import asyncio, sys, time
from cloudrift.storage.local import LocalStorage
from tests.conformance.storage import increment_counter

# Widen the window between the ETag check and the rename, so two writers would both
# pass the check if it were not under the lock.
check = LocalStorage._check_match

def slow_check(self, key, path, etag):
    check(self, key, path, etag)
    time.sleep(0.002)

LocalStorage._check_match = slow_check

async def main() -> None:
    storage = LocalStorage(root_dir=sys.argv[1])
    await asyncio.gather(*(increment_counter(storage, "counter.json") for _ in range(10)))
    await storage.close()

asyncio.run(main())
"""


def _run_incrementers(root: Path, count: int) -> list[int]:
    """Run ``count`` incrementer processes at once; their exit codes."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _INCREMENTER, str(root)],
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(count)
    ]
    return [child.wait(timeout=60) for child in children]


async def test_conditional_writes_from_two_processes_lose_no_update(tmp_path: Path) -> None:
    """Two OS processes each doing 10 concurrent if_match increments of one JSON counter
    end at exactly 20 (the ETag check and the rename are one step under a file lock)."""
    storage = LocalStorage(root_dir=tmp_path)
    await storage.upload("counter.json", b'{"n": 0}')
    assert _run_incrementers(tmp_path, 2) == [0, 0]
    assert await storage.download("counter.json") == b'{"n": 20}'
    await storage.close()
