"""The ses provider on moto's SESv2 server: conformance, unverified senders, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import parseaddr
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import RawMessage, ses_backends

from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailAuthenticationError,
    EmailSendError,
    EmailThrottledError,
    RecipientRejectedError,
    SenderUnverifiedError,
)
from cloudrift.email import Email, EmailMessage, get_email
from cloudrift.email.ses import SESEmail
from tests.conformance.email import SENDER, BackendFactory, Delivered, EmailConformance
from tests.servers._process import free_port
from tests.servers.moto import MotoEndpoint

OTHER_VERIFIED = "other@example.com"


class MotoMailbox:
    """Reads the messages moto's SES backend stored (moto runs in this process)."""

    def __init__(self, moto: MotoEndpoint) -> None:
        self.moto = moto

    def received(self) -> list[Delivered]:
        """Raw messages are parsed from their MIME; simple ones keep SES's fields."""
        backend = ses_backends[DEFAULT_ACCOUNT_ID][self.moto.region]
        out = []
        for sent in backend.sent_messages:
            sender = parseaddr(sent.source)[1]
            if isinstance(sent, RawMessage):
                # moto appends the header recipients to the Destination it was given
                # (real SES uses the Destination alone); the set removes the repeats.
                recipients = [parseaddr(a)[1] for a in sent.destinations]
                out.append(Delivered.from_mime(sender, recipients, sent.raw_data.encode()))
                continue
            recipients = [
                parseaddr(a)[1].lower()
                for key in ("ToAddresses", "CcAddresses", "BccAddresses")
                for a in sent.destinations.get(key, [])
            ]
            out.append(
                Delivered(
                    envelope_from=sender,
                    recipients=set(recipients),
                    subject=sent.subject,
                    text=sent.body,
                )
            )
        return out


def verify_identities(moto: MotoEndpoint, *identities: str) -> None:
    """Verify sender identities in moto, as SES requires before sending."""
    client = boto3.client(
        "sesv2",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key,
    )
    for identity in identities:
        client.create_email_identity(EmailIdentity=identity)


@pytest.fixture
def mailbox(moto: MotoEndpoint) -> MotoMailbox:
    """What moto's SES received, with the test's senders verified."""
    verify_identities(moto, SENDER, OTHER_VERIFIED)
    return MotoMailbox(moto)


@pytest.fixture
async def make_backend(moto: MotoEndpoint) -> AsyncIterator[BackendFactory]:
    """Builds ses backends pointed at moto and closes them after the test."""
    built: list[Email] = []

    async def build(**overrides: Any) -> Email:
        options: dict[str, Any] = {"default_from": SENDER, **moto.credentials(), **overrides}
        backend = get_email("ses", **options)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.close()


class TestSESConformance(EmailConformance):
    """ses meets the whole email contract against moto's SESv2 API."""


async def test_unverified_sender_is_sender_unverified_not_recipient_rejected(
    make_backend: BackendFactory, mailbox: MotoMailbox
) -> None:
    """A sender SES has not verified raises SenderUnverifiedError naming the sender."""
    backend = await make_backend()
    with pytest.raises(SenderUnverifiedError) as caught:
        await backend.send(
            "alice@example.com", "s", body_text="x", from_="stranger@unverified.test"
        )
    assert not isinstance(caught.value, RecipientRejectedError)
    assert caught.value.sender == "stranger@unverified.test"
    assert mailbox.received() == []


async def test_unverified_sender_with_attachments_is_also_sender_unverified(
    make_backend: BackendFactory, mailbox: MotoMailbox
) -> None:
    """The raw-MIME path maps an unverified sender the same way."""
    backend = await make_backend()
    with pytest.raises(SenderUnverifiedError):
        await backend.send(
            "alice@example.com", "s", body_text="x", from_="x@unverified.test", headers={"X-A": "1"}
        )


async def test_simple_content_carries_both_bodies_and_reply_to(
    make_backend: BackendFactory, mailbox: MotoMailbox
) -> None:
    """Without attachments or headers SES gets Simple content with text, HTML and Reply-To."""
    backend = await make_backend()
    assert isinstance(backend, SESEmail)
    client = await backend.native()
    seen: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.sesv2.SendEmail", lambda params, **_: seen.append(params)
    )
    await backend.send(
        "Zoë <zoe@example.com>",
        "Both",
        body_text="plain",
        body_html="<p>rich</p>",
        reply_to="help@example.com",
        bcc="audit@example.com",
    )
    (params,) = seen
    simple = params["Content"]["Simple"]
    assert simple["Body"]["Text"]["Data"] == "plain"
    assert simple["Body"]["Html"]["Data"] == "<p>rich</p>"
    assert params["ReplyToAddresses"] == ["help@example.com"]
    assert params["Destination"]["ToAddresses"] == ["=?utf-8?q?Zo=C3=AB?= <zoe@example.com>"]
    assert params["Destination"]["BccAddresses"] == ["audit@example.com"]
    assert mailbox.received()[0].recipients == {"zoe@example.com", "audit@example.com"}


async def test_batch_with_an_unverified_sender_reports_partial_failure(
    make_backend: BackendFactory, mailbox: MotoMailbox
) -> None:
    """send_batch sends the good messages and lists the failed one with its reason."""
    backend = await make_backend(max_concurrency=2)
    batch = [
        EmailMessage(to="a@example.com", subject="0", body_text="x"),
        EmailMessage(to="b@example.com", subject="1", body_text="x", from_="x@unverified.test"),
        EmailMessage(to="c@example.com", subject="2", body_text="x"),
    ]
    with pytest.raises(EmailSendError) as caught:
        await backend.send_batch(batch)
    assert set(caught.value.succeeded) == {0, 2}
    assert "SenderUnverifiedError" in caught.value.failed[1]
    assert sorted(d.subject for d in mailbox.received()) == ["0", "2"]


async def test_too_many_recipients_is_rejected_before_sending(
    make_backend: BackendFactory, mailbox: MotoMailbox
) -> None:
    """More than SES's 50 recipients per message raises EmailValidationError up front."""
    from cloudrift.core.exceptions import EmailValidationError

    backend = await make_backend()
    with pytest.raises(EmailValidationError, match="limit of 50"):
        await backend.send([f"u{i}@example.com" for i in range(51)], "s", body_text="x")
    assert mailbox.received() == []


async def test_unreachable_endpoint_health_is_false() -> None:
    """health_check() is False (not an exception) when SES cannot be reached."""
    backend = get_email(
        "ses",
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="AKIAX",
        aws_secret_access_key="unreachable-secret",
        connect_timeout=1,
        max_attempts=1,
    )
    async with backend:
        assert await backend.health_check() is False


# -- Error translation. moto does not throttle or check signatures, so these feed the
# -- translator real botocore ClientError objects shaped like SES's documented answers.


def _client_error(code: str, message: str, headers: dict[str, str] | None = None) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPHeaders": headers or {}},
    }
    return ClientError(response, "SendEmail")


def _prepared(backend: SESEmail) -> Any:
    return backend.prepare(EmailMessage(to="r@example.com", subject="s", body_text="x"))


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("TooManyRequestsException", "Too many requests", EmailThrottledError),
        ("LimitExceededException", "Daily message quota exceeded", EmailThrottledError),
        ("Throttling", "Maximum sending rate exceeded.", EmailThrottledError),
        ("UnrecognizedClientException", "The security token is invalid", EmailAuthenticationError),
        ("SignatureDoesNotMatch", "signature mismatch", EmailAuthenticationError),
        (
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            "region US-EAST-1: s@example.com",
            SenderUnverifiedError,
        ),
        (
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            "region US-EAST-1: r@example.com",
            RecipientRejectedError,
        ),
        ("MailFromDomainNotVerifiedException", "not verified", SenderUnverifiedError),
        ("NotFoundException", "Configuration set <x> does not exist", ConfigurationError),
    ],
)
def test_ses_errors_map_to_cloudrift_errors(
    code: str, message: str, expected: type[Exception]
) -> None:
    """Each SES error code becomes the specific cloudrift error, chained to the original."""
    backend = SESEmail(region="us-east-1", default_from="s@example.com")
    with pytest.raises(expected) as caught:
        backend._raise(_client_error(code, message), _prepared(backend))
    assert isinstance(caught.value.__cause__, ClientError)


def test_throttling_carries_retry_after() -> None:
    """A Retry-After header on a throttling answer becomes .retry_after in seconds."""
    backend = SESEmail(region="us-east-1", default_from="s@example.com")
    with pytest.raises(EmailThrottledError) as caught:
        backend._raise(
            _client_error("TooManyRequestsException", "slow", {"retry-after": "7"}),
            _prepared(backend),
        )
    assert caught.value.retry_after == 7.0


def test_secret_key_never_appears_in_repr_or_errors() -> None:
    """The secret key is masked in repr and redacted from SES error text."""
    backend = SESEmail(
        region="us-east-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="very-secret-key-123",
        default_from="s@example.com",
    )
    assert "very-secret-key-123" not in repr(backend)
    with pytest.raises(EmailAuthenticationError) as caught:
        backend._raise(
            _client_error("SignatureDoesNotMatch", "bad very-secret-key-123"), _prepared(backend)
        )
    assert "very-secret-key-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"aws_access_key_id": "AKIA"}, "missing aws_secret_access_key"),
        (
            {"aws_access_key_id": "AKIA", "aws_secret_access_key": "x", "profile_name": "p"},
            "conflicting|several",
        ),
        ({"region": ""}, "empty string"),
    ],
)
def test_bad_ses_credentials_are_rejected(options: dict[str, Any], match: str) -> None:
    """Half or conflicting credentials and empty values raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=match):
        get_email("ses", **{"region": "us-east-1", **options})
