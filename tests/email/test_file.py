"""The file provider passes the email conformance suite, reading back the files it wrote."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloudrift.core.exceptions import EmailSendError
from cloudrift.email import Email, get_email
from tests.conformance.email import SENDER, BackendFactory, Delivered, EmailConformance


class FolderMailbox:
    """Reads the .eml files and envelopes written into a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def received(self) -> list[Delivered]:
        """Every message file in the folder, oldest first."""
        if not self.folder.exists():
            return []
        out = []
        for eml in sorted(self.folder.glob("*.eml")):
            envelope = json.loads(eml.with_suffix(".envelope.json").read_text())
            out.append(Delivered.from_mime(envelope["from"], envelope["to"], eml.read_bytes()))
        return out


@pytest.fixture
def mailbox(tmp_path: Path) -> FolderMailbox:
    """The folder the file backends of this test write into."""
    return FolderMailbox(tmp_path / "outbox")


@pytest.fixture
async def make_backend(mailbox: FolderMailbox) -> AsyncIterator[BackendFactory]:
    """Builds file backends writing into the mailbox folder; closes them afterwards."""
    built: list[Email] = []

    async def build(**overrides: Any) -> Email:
        options: dict[str, Any] = {"default_from": SENDER, "directory": mailbox.folder}
        backend = get_email("file", **{**options, **overrides})
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.close()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class TestFileConformance(EmailConformance):
    """The file provider meets the whole email contract."""


async def test_file_writes_no_partial_files(tmp_path: Path) -> None:
    """Only finished .eml and .envelope.json files are left in the folder."""
    async with get_email("file", directory=tmp_path, default_from=SENDER) as email:
        await email.send("a@example.com", "s", body_text="b")
    names = _names(tmp_path)
    assert len(names) == 2
    assert names[0].endswith(".eml") and names[1].endswith(".envelope.json")


async def test_unwritable_folder_raises_email_send_error(tmp_path: Path) -> None:
    """A folder that cannot be created raises EmailSendError and health_check is False."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    async with get_email("file", directory=blocker / "sub", default_from=SENDER) as email:
        with pytest.raises(EmailSendError, match="could not write"):
            await email.send("a@example.com", "s", body_text="b")
        assert await email.health_check() is False


async def test_repr_shows_the_folder(tmp_path: Path) -> None:
    """repr() names the provider and the folder."""
    async with get_email("file", directory=tmp_path) as email:
        assert repr(email) == f"<FileEmail provider='file' directory={str(tmp_path)!r}>"


async def test_eml_of_a_thousand_recipients_has_no_line_over_998_bytes(tmp_path: Path) -> None:
    """The .eml a recipient would receive has folded headers: every recipient, short lines."""
    to = [f"User {i} <user{i}@example.com>" for i in range(1_000)]
    async with get_email("file", default_from=SENDER, directory=tmp_path) as backend:
        await backend.send(to, "Grüße " * 100, reply_to=to[:100], body_text="x")
    (eml,) = [name for name in _names(tmp_path) if name.endswith(".eml")]
    raw = (tmp_path / eml).read_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    (delivered,) = FolderMailbox(tmp_path).received()
    assert delivered.to == [f"user{i}@example.com" for i in range(1_000)]
    assert delivered.subject == "Grüße " * 100
