"""The ``azure_acs`` email provider: Azure Communication Services Email (async SDK).

ACS takes the message as JSON fields, not MIME: the service writes Date and
Message-ID itself. Sending is a long-running operation; it is polled every
``poll_interval`` seconds and given up after ``send_timeout`` seconds (the operation
may still complete on the service: the error says so and names its id).

The client is always built as ``EmailClient(endpoint, credential)``: the SDK's
``from_connection_string`` rewrites the endpoint to https, which would make plain-http
endpoints (local stand-ins, private proxies) unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from contextlib import AsyncExitStack
from typing import Any, NoReturn

from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest

from cloudrift.core.auth import auth_method, select_auth
from cloudrift.core.azure import azure_identity, identity_auth_methods, open_identity_credential
from cloudrift.core.exceptions import (
    ConfigurationError,
    EmailAuthenticationError,
    EmailConnectionError,
    EmailSendError,
    EmailThrottledError,
    EmailValidationError,
    RecipientRejectedError,
    SenderUnverifiedError,
)
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.operation import BackendDescription
from cloudrift.core.retry import RetryPolicy
from cloudrift.core.secrets import Secret, redact, secret
from cloudrift.core.validation import check_int
from cloudrift.email.base import Email, EmailAddress, PreparedEmail

API_VERSION = "2025-09-01"
_IDENTITY = identity_auth_methods("endpoint")
_AUTH_METHODS = (
    auth_method("connection_string", ["connection_string"]),
    auth_method("access_key", ["endpoint", "access_key"]),
    _IDENTITY.service_principal,
    _IDENTITY.managed_identity,
)
_SENDER_CODES = {"DomainNotLinked", "InvalidSenderUserName", "SenderNotAllowed", "InvalidSender"}


def parse_connection_string(value: str) -> tuple[str, str]:
    """``endpoint=...;accesskey=...`` → (endpoint, access key), keeping the endpoint's scheme."""
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if not item.strip():
            continue
        name, sep, val = item.partition("=")
        if not sep:
            raise ConfigurationError(
                "azure_acs email: connection_string must look like "
                "'endpoint=https://<resource>.communication.azure.com/;accesskey=<key>'"
            )
        parts[name.strip().lower()] = val.strip()
    endpoint, key = parts.get("endpoint"), parts.get("accesskey")
    if not endpoint or not key:
        raise ConfigurationError(
            "azure_acs email: connection_string needs both endpoint=... and accesskey=..."
        )
    return endpoint, key


def _recipient(address: EmailAddress) -> dict[str, str]:
    entry = {"address": address.addr}
    if address.name:
        entry["displayName"] = address.name
    return entry


class AzureACSEmail(Email):
    """Sends through Azure Communication Services Email."""

    provider = "azure_acs"
    backend_name = "azure_acs email"
    #: ACS accepts at most 10 MB per message, attachments included.
    default_max_message_bytes = 10 * 1024 * 1024
    #: ACS accepts at most 50 recipients (to + cc + bcc) per message.
    max_recipients = 50

    def __init__(
        self,
        *,
        connection_string: str | Secret | None = None,
        endpoint: str | None = None,
        access_key: str | Secret | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        managed_identity_client_id: str | None = None,
        default_from: str | None = None,
        max_message_bytes: int | None = None,
        max_concurrency: int = 10,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        send_timeout: float = 60.0,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            default_from=default_from,
            max_message_bytes=max_message_bytes,
            max_concurrency=max_concurrency,
            retry=retry,
        )
        self._connection_string = secret(connection_string)
        self._access_key = secret(access_key)
        self._auth = select_auth(
            "azure_acs email",
            {
                "connection_string": connection_string,
                "endpoint": endpoint,
                "access_key": access_key,
                "tenant_id": tenant_id,
                "client_id": client_id,
                "client_secret": client_secret,
                "managed_identity_client_id": managed_identity_client_id,
            },
            _AUTH_METHODS,
        )
        self._identity = azure_identity(
            "azure_acs email",
            self._auth,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            managed_identity_client_id=managed_identity_client_id,
        )
        if self._auth == "connection_string":
            assert self._connection_string is not None
            endpoint, key = parse_connection_string(self._connection_string.reveal())
            self._access_key = Secret(key)
        assert endpoint is not None
        if not endpoint.lower().startswith(("https://", "http://")):
            raise ConfigurationError(
                f"azure_acs email: endpoint {endpoint!r} must start with https:// "
                "(e.g. https://<resource>.communication.azure.com)"
            )
        if self._access_key is not None:
            try:
                base64.b64decode(self._access_key.reveal(), validate=True)
            except ValueError:
                raise ConfigurationError(
                    "azure_acs email: the access key is not base64; copy it from the "
                    "resource's Keys page"
                ) from None
        if poll_interval <= 0 or send_timeout <= 0:
            raise ConfigurationError("azure_acs email: poll_interval and send_timeout must be > 0")
        self.endpoint = endpoint.rstrip("/")
        self._poll_interval = poll_interval
        self._send_timeout = send_timeout
        check_int("azure_acs email: max_attempts", max_attempts, at_least=1)
        # azure-core's own retry (connection errors, 429 with Retry-After, 5xx).
        self._transport_options: dict[str, Any] = {
            "retry_total": max_attempts - 1,
            "connection_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        self._client: LazyClient[Any] = LazyClient(self._build_client)

    def _location(self) -> str:
        return f"endpoint={self.endpoint!r}"

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("azure_acs", None, self.endpoint)

    def _secrets(self) -> list[Secret | None]:
        identity = self._identity.secrets if self._identity else ()
        return [self._connection_string, self._access_key, *identity]

    # ---------------------------------------------------------------- client

    async def _build_client(self, stack: AsyncExitStack) -> Any:
        credential: Any
        if self._identity is not None:
            credential = await open_identity_credential(stack, self._identity)
        else:
            assert self._access_key is not None
            credential = AzureKeyCredential(self._access_key.reveal())
        client = EmailClient(
            self.endpoint,
            credential,
            polling_interval=self._poll_interval,
            **self._transport_options,
        )
        return await stack.enter_async_context(client)

    async def _native_client(self) -> Any:
        """``await email.native()``: the ``azure.communication.email.aio.EmailClient``."""
        return await self._client.get()

    async def _aclose(self) -> None:
        await self._client.aclose()

    # ----------------------------------------------------------------- hooks

    def _request(self, prepared: PreparedEmail) -> dict[str, Any]:
        recipients: dict[str, list[dict[str, str]]] = {"to": [_recipient(a) for a in prepared.to]}
        if prepared.cc:
            recipients["cc"] = [_recipient(a) for a in prepared.cc]
        if prepared.bcc:
            recipients["bcc"] = [_recipient(a) for a in prepared.bcc]
        content: dict[str, str] = {"subject": prepared.subject}
        if prepared.body_text is not None:
            content["plainText"] = prepared.body_text
        if prepared.body_html is not None:
            content["html"] = prepared.body_html
        message: dict[str, Any] = {
            "senderAddress": prepared.sender.addr,
            "recipients": recipients,
            "content": content,
        }
        if prepared.reply_to:
            message["replyTo"] = [_recipient(a) for a in prepared.reply_to]
        if prepared.attachments:
            message["attachments"] = [
                {
                    "name": a.filename,
                    "contentType": a.content_type,
                    "contentInBase64": base64.b64encode(a.content).decode(),
                }
                for a in prepared.attachments
            ]
        if prepared.headers:
            message["headers"] = dict(prepared.headers)
        return message

    async def _deliver(self, prepared: PreparedEmail) -> str:
        self._ensure_open()
        # Our own operation id (the Operation-Id header) names the operation even when
        # polling times out, and makes a retried send idempotent on the service.
        operation_id = str(uuid.uuid4())
        try:
            client = await self._client.get()
            poller = await client.begin_send(
                self._request(prepared),
                operation_id=operation_id,
                polling_interval=self._poll_interval,
            )
            result = await asyncio.wait_for(poller.result(), timeout=self._send_timeout)
        except TimeoutError as exc:
            raise EmailConnectionError(
                f"azure_acs email: the send operation {operation_id} did not "
                f"finish within send_timeout={self._send_timeout}s; it may still complete on "
                "the service"
            ) from exc
        except AzureError as exc:
            self._raise(exc, prepared)
        if isinstance(result, dict) and result.get("id"):
            return str(result["id"])
        return operation_id

    async def _health(self) -> bool:
        client = await self._client.get()
        # Polling an operation that cannot exist is signed like a send: 404 proves the
        # service is reachable and accepted our credentials; 401/403 means it did not.
        probe = HttpRequest(
            "GET", f"{self.endpoint}/emails/operations/{uuid.uuid4()}?api-version={API_VERSION}"
        )
        response = await client.send_request(probe)
        return int(response.status_code) in (200, 404)

    # ---------------------------------------------------------------- errors

    def _raise(self, exc: AzureError, prepared: PreparedEmail) -> NoReturn:
        """Translate an azure-core error into cloudrift's email errors (one place)."""
        text = redact(str(getattr(exc, "message", None) or exc), self._secrets())
        if isinstance(exc, ClientAuthenticationError):
            raise EmailAuthenticationError(
                f"azure_acs email: the service refused the credentials ({text}); check the "
                "access key or the identity's role on the resource"
            ) from exc
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            raise EmailConnectionError(
                f"azure_acs email: could not reach {self.endpoint} ({text})"
            ) from exc
        if not isinstance(exc, HttpResponseError):
            raise EmailSendError(f"azure_acs email: {text}") from exc
        status = exc.status_code
        code = _error_code(exc)
        sender = prepared.sender.addr
        if status == 429 or code == "TooManyRequests":
            raise EmailThrottledError(
                f"azure_acs email: the service is throttling ({code or status}); retry later",
                retry_after=_retry_after(exc),
            ) from exc
        if status in (401, 403):
            raise EmailAuthenticationError(
                f"azure_acs email: the service refused the credentials ({status} {text})"
            ) from exc
        if code in _SENDER_CODES:
            raise SenderUnverifiedError(
                f"azure_acs email: the sender {sender} is not allowed ({code}: {text}); link "
                "its domain to the Communication Services resource and use a configured "
                "sender username",
                sender=sender,
            ) from exc
        if code and "recipient" in code.lower():
            named = [r for r in prepared.envelope_recipients if r.lower() in text.lower()]
            raise RecipientRejectedError(
                f"azure_acs email: the service refused recipient(s) ({code}: {text})",
                recipients=named or prepared.envelope_recipients,
            ) from exc
        if status in (400, 422):
            raise EmailValidationError(
                f"azure_acs email: the service refused the request ({code}: {text})"
            ) from exc
        raise EmailSendError(
            f"azure_acs email: the service did not send the message ({code or status}: {text})"
        ) from exc


def _error_code(exc: HttpResponseError) -> str | None:
    if exc.error is not None and exc.error.code:
        return str(exc.error.code)
    response: Any = exc.response
    if response is None:
        return None
    try:
        body = response.json()
    except Exception:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"])
    return None


def _retry_after(exc: HttpResponseError) -> float | None:
    response: Any = exc.response
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


__all__ = ["AzureACSEmail", "parse_connection_string"]
