"""Shared email behaviour: factory dispatch, validation helpers, batch failure reporting."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailError,
    EmailSendError,
    EmailThrottledError,
    EmailValidationError,
    RecipientRejectedError,
)
from cloudrift.core.retry import RetryPolicy
from cloudrift.email import Attachment, EmailMessage, get_email
from cloudrift.email.base import Email, PreparedEmail, parse_address, sanitize_filename


class ScriptedEmail(Email):
    """A test-only provider whose deliveries fail for scripted recipients (no SDK involved)."""

    provider = "scripted"

    def __init__(self, *, refuse: Sequence[str] = (), throttle_times: int = 0) -> None:
        super().__init__(
            default_from="s@example.com",
            retry=RetryPolicy(attempts=3, base_delay=0) if throttle_times else None,
        )
        self.refuse = set(refuse)
        self.throttle_times = throttle_times
        self.attempts = 0
        self.delivered: list[str] = []

    async def _deliver(self, prepared: PreparedEmail) -> str:
        self.attempts += 1
        if self.throttle_times:
            self.throttle_times -= 1
            raise EmailThrottledError("slow down", retry_after=1.0)
        refused = [r for r in prepared.envelope_recipients if r in self.refuse]
        if refused:
            raise RecipientRejectedError("refused", recipients=refused)
        self.delivered.append(prepared.subject)
        return f"id-{prepared.subject}"

    async def _health(self) -> bool:
        raise OSError("unreachable")


async def test_partial_batch_failure_lists_every_input() -> None:
    """A partly failed batch raises EmailSendError whose succeeded+failed cover every index."""
    email = ScriptedEmail(refuse=["bad@example.com"])
    batch = [
        EmailMessage(to="ok@example.com", subject="0", body_text="x"),
        EmailMessage(to="bad@example.com", subject="1", body_text="x"),
        EmailMessage(to="ok@example.com", subject="2", body_text="x"),
    ]
    with pytest.raises(EmailSendError) as caught:
        await email.send_batch(batch)
    assert caught.value.succeeded == {0: "id-0", 2: "id-2"}
    assert set(caught.value.failed) == {1}
    assert "RecipientRejectedError" in caught.value.failed[1]
    assert isinstance(caught.value.__cause__, RecipientRejectedError)
    assert email.delivered == ["0", "2"]


async def test_throttled_sends_are_retried_when_a_retry_policy_is_given() -> None:
    """With retry=RetryPolicy(...), an EmailThrottledError is retried until it succeeds."""
    email = ScriptedEmail(throttle_times=2)
    assert await email.send("ok@example.com", "t", body_text="x") == "id-t"
    assert email.attempts == 3


async def test_health_check_returns_false_instead_of_raising() -> None:
    """A provider whose service cannot be reached reports False, never an exception."""
    assert await ScriptedEmail().health_check() is False


async def test_send_batch_rejects_a_single_message_or_non_messages() -> None:
    """send_batch needs a list of EmailMessage: a bare message or a dict is refused clearly."""
    email = ScriptedEmail()
    single = EmailMessage(to="a@example.com", subject="s", body_text="b")
    with pytest.raises(EmailValidationError, match="list of EmailMessage"):
        await email.send_batch(single)  # type: ignore[arg-type]
    with pytest.raises(EmailValidationError, match="item 0 must be"):
        await email.send_batch([{"to": "a@example.com"}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\secret.txt", "secret.txt"),
        ("evil\r\nname: x.txt", "evilname x.txt"),
        ('quo"te.txt', "quote.txt"),
        ("...hidden", "hidden"),
        ("", "attachment"),
        ("../", "attachment"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_attachment_filenames_are_sanitised(given: str, safe: str) -> None:
    """Directory parts, control characters and quotes are removed; names are never empty."""
    assert sanitize_filename(given) == safe


@pytest.mark.parametrize(
    "bad", ["plain", "@example.com", "a@", "a b@example.com", "a@exa mple.com", "a@-x.com", 5]
)
def test_malformed_addresses_raise_email_validation_error(bad: object) -> None:
    """Addresses that are not user@domain are rejected with what to use instead."""
    with pytest.raises(EmailValidationError, match=r"user@example\.com|must be a string"):
        parse_address(bad, "to")


def test_display_name_addresses_are_parsed() -> None:
    """'Name <addr>' and '"Quoted" <addr>' keep the display name and the bare address."""
    assert parse_address('"Ann Lee" <ann@example.com>', "to").addr == "ann@example.com"
    assert parse_address("Ann <ann@example.com>", "to").name == "Ann"


def test_unknown_provider_lists_the_valid_ones() -> None:
    """An unknown provider name raises ConfigurationError naming the choices."""
    with pytest.raises(ConfigurationError, match="azure_acs, file, memory, ses, smtp"):
        get_email("sendgrid")


def test_misspelled_option_is_rejected_with_a_suggestion() -> None:
    """A typo in an option name raises ConfigurationError suggesting the right one."""
    with pytest.raises(ConfigurationError, match="did you mean 'default_from'"):
        get_email("memory", defualt_from="a@example.com")


def test_invalid_default_from_fails_at_construction() -> None:
    """A malformed default_from is rejected when the backend is built, not at first send."""
    with pytest.raises(ConfigurationError, match="default_from"):
        get_email("memory", default_from="nobody")


def test_importing_email_needs_no_sdk() -> None:
    """`import cloudrift.email` works when aiosmtplib, aioboto3 and azure are unimportable."""
    code = (
        "import sys\n"
        "for name in ('aiosmtplib', 'aioboto3', 'botocore', 'azure'):\n"
        "    sys.modules[name] = None\n"
        "import cloudrift.email\n"
        "from cloudrift.email import get_email\n"
        "get_email('memory')\n"
        "try:\n"
        "    get_email('smtp', host='x')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "ConfigurationError" in out


def test_email_errors_share_one_base() -> None:
    """Every email error derives from EmailError, so one except clause catches them all."""
    assert issubclass(EmailSendError, EmailError) and issubclass(EmailValidationError, EmailError)


def _built(**overrides: object) -> bytes:
    fields: dict[str, object] = {"to": "a@example.com", "subject": "s", "body_text": "b"}
    fields.update(overrides)
    return ScriptedEmail().prepare(EmailMessage(**fields)).mime  # type: ignore[arg-type]


def test_mime_is_seven_bit_with_crlf_line_ends() -> None:
    """Built messages are ASCII with CRLF line ends only, whatever the input's newlines."""
    raw = _built(
        subject="Grüße",
        body_text="line one\nline two\r\nÜmlaut ✓\rlast",
        body_html="<p>ü</p>",
        attachments=[Attachment("résumé.pdf", bytes(range(256)), "application/pdf")],
    )
    raw.decode("ascii")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


def test_long_and_non_ascii_lines_survive_the_round_trip() -> None:
    """Lines over 998 characters and non-ASCII text come back exactly after parsing."""
    import email.policy
    from email.parser import BytesParser

    long_line = "x" * 5000
    text = f"{long_line}\nÇa marche ✓\n\x0cform feed kept"
    parsed = BytesParser(policy=email.policy.default).parsebytes(
        _built(body_text=text, attachments=[Attachment("résumé.pdf", b"%PDF", None)])
    )
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").rstrip("\n") == text
    assert all(len(line) <= 998 for line in parsed.as_string().splitlines())
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "résumé.pdf"
    assert attachment.get_content_type() == "application/pdf"


async def test_closing_during_a_batch_reports_the_unsent_messages() -> None:
    """Messages not yet sent when close() runs are listed in .failed, not silently dropped."""

    class ClosingEmail(ScriptedEmail):
        """Closes itself while delivering the first message."""

        async def _deliver(self, prepared: PreparedEmail) -> str:
            await self.close()
            return await super()._deliver(prepared)

    email = ClosingEmail()
    email.max_concurrency = 1
    batch = [EmailMessage(to="ok@example.com", subject=str(i), body_text="x") for i in range(3)]
    with pytest.raises(EmailSendError) as caught:
        await email.send_batch(batch)
    assert caught.value.succeeded == {0: "id-0"}
    assert set(caught.value.failed) == {1, 2}
    assert "closed" in caught.value.failed[1]


async def test_a_single_attachment_not_in_a_list_is_refused_clearly() -> None:
    """attachments=Attachment(...) (not a list) raises EmailValidationError saying so."""
    email = ScriptedEmail()
    with pytest.raises(EmailValidationError, match="list of Attachment"):
        await email.send(
            "a@example.com",
            "s",
            body_text="x",
            attachments=Attachment("a.txt", b"x"),  # type: ignore[arg-type]
        )
    assert email.delivered == []


# ------------------------------------------------------------------ header folding


def _parsed(raw: bytes) -> Any:
    """The message parsed with the default policy (header objects, unfolded values)."""
    import email.policy
    from email.parser import BytesParser

    return BytesParser(policy=email.policy.default).parsebytes(raw)


_LONG_NAME = "日本語の長いファイル名" * 20 + ".pdf"


def _header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_every_header_is_folded_to_lines_of_at_most_78_and_reads_back_exactly() -> None:
    """Long To/Cc/Reply-To, non-ASCII subjects and custom headers fold; values are unchanged."""
    to = [f"Recipient {i} <user{i}@example.com>" for i in range(200)]
    cc = [f"Zoë Ångström {i} <cc{i}@example.com>" for i in range(100)]
    subject = "Prüfung der Größe — " * 30
    custom = "a long custom value " * 60
    raw = _built(
        to=to,
        cc=cc,
        reply_to=[f"reply{i}@example.com" for i in range(100)],
        subject=subject,
        headers={"X-Custom": custom, "X-Tabbed": "one\ttwo  three " * 30},
    )
    assert max(len(line) for line in _header_lines(raw)) <= 78
    parsed = _parsed(raw)
    assert [str(a) for a in parsed["To"].addresses] == to
    assert [a.display_name for a in parsed["Cc"].addresses][5] == "Zoë Ångström 5"
    assert len(parsed["Reply-To"].addresses) == 100
    assert parsed["Subject"] == subject
    assert parsed["X-Custom"] == custom
    assert parsed["X-Tabbed"] == "one\ttwo  three " * 30


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "x" * 3000},
        {"subject": "日本語" * 800},
        {"headers": {"X-Token": "t" * 5000}},
        {"to": ["N" * 2000 + " <a@example.com>"]},
        {"to": ["Ä" * 1500 + " <a@example.com>"], "from_": "É" * 1000 + " <s@example.com>"},
        {"reply_to": ["Ü" * 1500 + " <r@example.com>"]},
        {"attachments": [Attachment(_LONG_NAME, b"%PDF")]},
    ],
    ids=["ascii-word", "cjk-subject", "token", "ascii-name", "from-name", "reply-to", "file"],
)
def test_no_line_is_longer_than_998_whatever_the_values(overrides: dict[str, object]) -> None:
    """Unfoldable words and very long names are RFC 2047/2231-encoded so no line passes 998."""
    raw = _built(**overrides)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = _parsed(raw)
    if "subject" in overrides:
        assert parsed["Subject"] == overrides["subject"]
    if "headers" in overrides:
        assert parsed["X-Token"] == "t" * 5000
    if "attachments" in overrides:
        (attachment,) = parsed.iter_attachments()
        assert attachment.get_filename() == sanitize_filename(_LONG_NAME)


def test_an_unfoldable_header_name_or_content_type_is_refused() -> None:
    """A custom header name over 76 characters or a 128+ character MIME subtype is refused."""
    with pytest.raises(EmailValidationError, match="at most 76"):
        _built(headers={"X-" + "n" * 80: "v"})
    with pytest.raises(EmailValidationError, match="not a MIME type"):
        _built(attachments=[Attachment("a.bin", b"x", "application/" + "x" * 128)])
