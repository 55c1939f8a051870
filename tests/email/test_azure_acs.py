"""The azure_acs provider against a local server speaking the ACS email REST API."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailAuthenticationError,
    EmailConnectionError,
    EmailSendError,
    EmailThrottledError,
    RecipientRejectedError,
    SenderUnverifiedError,
)
from cloudrift.email import Email, EmailMessage, get_email
from tests.conformance.email import SENDER, BackendFactory, Delivered, EmailConformance
from tests.servers._process import free_port
from tests.servers.acs import ACSServer


def delivered_from_request(message: dict[str, Any]) -> Delivered:
    """What the ACS service received, as a provider-neutral Delivered value."""
    recipients = message["recipients"]

    def addresses(kind: str) -> list[str]:
        return [r["address"].lower() for r in recipients.get(kind, [])]

    visible = dict(message, recipients={k: v for k, v in recipients.items() if k != "bcc"})
    content = message["content"]
    return Delivered(
        envelope_from=message["senderAddress"],
        recipients=set(addresses("to") + addresses("cc") + addresses("bcc")),
        subject=content["subject"],
        text=content.get("plainText"),
        html=content.get("html"),
        to=addresses("to"),
        cc=addresses("cc"),
        reply_to=[r["address"].lower() for r in message.get("replyTo", [])],
        from_=[message["senderAddress"].lower()],
        to_names=[r.get("displayName", "") for r in recipients.get("to", [])],
        headers={k.lower(): v for k, v in message.get("headers", {}).items()},
        attachments={
            a["name"]: (a["contentType"], base64.b64decode(a["contentInBase64"]))
            for a in message.get("attachments", [])
        },
        visible=json.dumps(visible, ensure_ascii=False),
    )


class ACSMailbox:
    """Reads the send requests the ACS stand-in accepted."""

    def __init__(self, server: ACSServer) -> None:
        self.server = server

    def received(self) -> list[Delivered]:
        """Every accepted send request."""
        return [delivered_from_request(m) for m in self.server.sent]


@pytest.fixture
def mailbox(acs: ACSServer) -> ACSMailbox:
    """The ACS stand-in's accepted messages."""
    return ACSMailbox(acs)


@pytest.fixture
async def make_backend(acs: ACSServer) -> AsyncIterator[BackendFactory]:
    """Builds azure_acs backends on the stand-in (endpoint + key) and closes them."""
    built: list[Email] = []

    async def build(**overrides: Any) -> Email:
        options: dict[str, Any] = {
            "default_from": SENDER,
            "endpoint": acs.endpoint,
            "access_key": acs.access_key,
            "poll_interval": 0.01,
            "send_timeout": 10.0,
            **overrides,
        }
        backend = get_email("azure_acs", **options)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.close()


class TestACSConformance(EmailConformance):
    """azure_acs meets the email contract; the service (not us) writes the MIME."""

    SERVICE_BUILDS_MIME = True


async def test_send_polls_the_operation_until_it_succeeds(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """send() waits for the long-running operation and returns its id."""
    acs.state.polls_before_done = 3
    backend = await make_backend()
    msg_id = await backend.send("a@example.com", "s", body_text="x")
    assert acs.state.operations == {msg_id: 4}


async def test_connection_string_with_plain_http_endpoint_works(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """A connection string keeps its http:// endpoint (the SDK's parser would force https)."""
    backend = await make_backend(
        endpoint=None, access_key=None, connection_string=acs.connection_string
    )
    await backend.send("a@example.com", "s", body_text="x")
    assert len(acs.sent) == 1


async def test_wrong_key_fails_the_signature_check(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """A wrong access key is refused by the HMAC check: EmailAuthenticationError, no leak."""
    wrong = base64.b64encode(b"not-the-right-key").decode()
    backend = await make_backend(access_key=wrong)
    with pytest.raises(EmailAuthenticationError) as caught:
        await backend.send("a@example.com", "s", body_text="x")
    assert wrong not in str(caught.value) and wrong not in repr(backend)
    assert acs.state.signature_failures == 1 and acs.sent == []
    assert await backend.health_check() is False


async def test_unlinked_sender_domain_is_sender_unverified(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """A sender whose domain is not linked raises SenderUnverifiedError naming it."""
    backend = await make_backend()
    with pytest.raises(SenderUnverifiedError) as caught:
        await backend.send("a@example.com", "s", body_text="x", from_="me@unlinked.test")
    assert caught.value.sender == "me@unlinked.test"
    assert not isinstance(caught.value, RecipientRejectedError)


async def test_refused_recipient_is_recipient_rejected(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """An invalid-recipients answer raises RecipientRejectedError naming the address."""
    acs.state.refuse_recipients = {"ghost@example.com"}
    backend = await make_backend()
    with pytest.raises(RecipientRejectedError) as caught:
        await backend.send(["ok@example.com", "ghost@example.com"], "s", body_text="x")
    assert caught.value.recipients == ["ghost@example.com"]


async def test_429_is_throttling_with_retry_after(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """A 429 answer raises EmailThrottledError carrying the Retry-After seconds."""
    acs.state.throttle = True
    backend = await make_backend(max_attempts=1)
    with pytest.raises(EmailThrottledError) as caught:
        await backend.send("a@example.com", "s", body_text="x")
    assert caught.value.retry_after == 3.0


async def test_failed_operation_raises_email_send_error(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """An operation that ends 'Failed' raises EmailSendError, not a raw SDK error."""
    acs.state.fail_operation = True
    backend = await make_backend()
    with pytest.raises(EmailSendError):
        await backend.send("a@example.com", "s", body_text="x")


async def test_send_gives_up_after_send_timeout(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """An operation that never finishes raises EmailConnectionError after send_timeout."""
    acs.state.polls_before_done = 10**9
    backend = await make_backend(send_timeout=0.3)
    with pytest.raises(EmailConnectionError, match="send_timeout"):
        await backend.send("a@example.com", "s", body_text="x")


async def test_batch_sends_concurrently_and_reports_partial_failure(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """send_batch sends the good messages and lists the refused one."""
    acs.state.refuse_recipients = {"ghost@example.com"}
    backend = await make_backend(max_concurrency=3)
    batch = [EmailMessage(to=f"u{i}@example.com", subject=str(i), body_text="x") for i in range(6)]
    batch[4] = EmailMessage(to="ghost@example.com", subject="4", body_text="x")
    with pytest.raises(EmailSendError) as caught:
        await backend.send_batch(batch)
    assert set(caught.value.succeeded) == {0, 1, 2, 3, 5}
    assert "RecipientRejectedError" in caught.value.failed[4]
    assert len(acs.sent) == 5


async def test_batch_keeps_at_most_max_concurrency_sends_in_flight(
    make_backend: BackendFactory, acs: ACSServer
) -> None:
    """send_batch overlaps sends, but never more than max_concurrency at once."""
    # The stand-in holds every send until 3 are in flight together (a ceiling of 10 s if
    # they never are), so a slow machine cannot finish one before the third starts.
    acs.state.send_gate = 3
    acs.state.send_delay = 0.05
    backend = await make_backend(max_concurrency=3)
    ids = await backend.send_batch(
        [EmailMessage(to=f"u{i}@example.com", subject=str(i), body_text="x") for i in range(9)]
    )
    assert len(set(ids)) == 9
    assert acs.state.max_in_flight == 3


async def test_unreachable_endpoint_raises_connection_error() -> None:
    """Nothing listening: send raises EmailConnectionError and health_check is False."""
    async with get_email(
        "azure_acs",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=base64.b64encode(b"k").decode(),
        default_from=SENDER,
        max_attempts=1,
    ) as backend:
        with pytest.raises(EmailConnectionError):
            await backend.send("a@example.com", "s", body_text="x")
        assert await backend.health_check() is False


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"endpoint": "https://x.communication.azure.com", "tenant_id": "t"}, "missing"),
        ({"connection_string": "endpoint=https://x/"}, "accesskey"),
        ({"connection_string": "garbage"}, "must look like"),
        ({"endpoint": "x.communication.azure.com", "access_key": "a2V5"}, "must start with"),
        ({"endpoint": "https://x.communication.azure.com", "access_key": "%%%"}, "base64"),
        ({"endpoint": "https://x", "access_key": "", "client_id": "c"}, "empty string"),
    ],
)
def test_bad_acs_configuration_is_rejected(options: dict[str, Any], match: str) -> None:
    """Incomplete or malformed credentials raise ConfigurationError saying what to fix."""
    with pytest.raises(ConfigurationError, match=match):
        get_email("azure_acs", **options)


def test_repr_shows_the_endpoint_but_no_key() -> None:
    """repr() shows provider and endpoint; the access key never appears."""
    key = base64.b64encode(b"super-secret-acs-key").decode()
    backend = get_email(
        "azure_acs",
        connection_string=f"endpoint=https://x.communication.azure.com/;accesskey={key}",
    )
    assert repr(backend) == (
        "<AzureACSEmail provider='azure_acs' endpoint='https://x.communication.azure.com'>"
    )
    assert key not in repr(vars(backend))


async def test_access_key_never_appears_in_debug_logs(
    make_backend: BackendFactory, acs: ACSServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, a send and a refused send log neither key nor signature."""
    import logging

    with caplog.at_level(logging.DEBUG):
        backend = await make_backend()
        await backend.send("a@example.com", "s", body_text="x")
        acs.state.throttle = True
        with pytest.raises(EmailThrottledError):
            await (await make_backend(max_attempts=1)).send("a@example.com", "s", body_text="x")
    assert "emails:send" in caplog.text  # the SDK's request logging was captured
    assert acs.access_key not in caplog.text
    assert "Signature=" not in caplog.text


def test_service_principal_and_managed_identity_configs_are_accepted_without_leaks() -> None:
    """endpoint + service principal, and endpoint alone (managed identity), both build."""
    sp = get_email(
        "azure_acs",
        endpoint="https://x.communication.azure.com",
        tenant_id="tenant",
        client_id="client",
        client_secret="sp-secret-value",
    )
    mi = get_email("azure_acs", endpoint="https://x.communication.azure.com")
    assert "sp-secret-value" not in repr(sp) and "sp-secret-value" not in repr(vars(sp))
    assert (
        repr(mi)
        == "<AzureACSEmail provider='azure_acs' endpoint='https://x.communication.azure.com'>"
    )
