"""The ``ses`` email provider: Amazon SES v2 through aioboto3.

A message without attachments or custom headers goes as SES "Simple" content (SES
builds the MIME); anything else goes as the raw MIME cloudrift built, with every
recipient (bcc included) in the Destination and none of the bcc in the headers.
``send_batch`` sends concurrently, at most ``max_concurrency`` at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import formataddr
from typing import Any, NoReturn, Unpack

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from cloudrift.core.aws import (
    AUTH_ERROR_CODES,
    THROTTLING_ERROR_CODES,
    AwsAuthOptions,
    aio_config,
    aws_auth_methods,
    aws_credentials,
    client_error_details,
    connection_errors,
    lazy_client,
)
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
from cloudrift.core.operation import BackendDescription
from cloudrift.core.retry import RetryPolicy
from cloudrift.core.secrets import redact
from cloudrift.email.base import Email, EmailAddress, PreparedEmail

# A role is assumed with the default chain as its source (as in S3).
_AUTH_METHODS = aws_auth_methods(role_source_credentials=False)
_CONNECTION = connection_errors()
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w.-]+", re.UNICODE)


def _formatted(address: EmailAddress) -> str:
    """``Name <addr>`` with a non-ASCII name RFC 2047-encoded, as SES requires."""
    return formataddr((address.name, address.addr)) if address.name else address.addr


def _formatted_all(addresses: Iterable[EmailAddress]) -> list[str]:
    return [_formatted(a) for a in addresses]


class SESEmail(Email):
    """Sends through Amazon SES (SESv2 API)."""

    provider = "ses"
    backend_name = "ses email"
    #: SES accepts at most 40 MB per message (after encoding).
    default_max_message_bytes = 40 * 1024 * 1024
    #: SES accepts at most 50 recipients (to + cc + bcc) per message.
    max_recipients = 50

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        configuration_set: str | None = None,
        default_from: str | None = None,
        max_message_bytes: int | None = None,
        max_concurrency: int = 10,
        retry: RetryPolicy | None = None,
        max_pool_connections: int = 20,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        **auth: Unpack[AwsAuthOptions],
    ) -> None:
        super().__init__(
            default_from=default_from,
            max_message_bytes=max_message_bytes,
            max_concurrency=max_concurrency,
            retry=retry,
        )
        self._creds = aws_credentials("ses email", _AUTH_METHODS, **auth)
        self._auth = self._creds.method
        if region == "":
            raise ConfigurationError("ses email: region is an empty string; pass e.g. 'us-east-1'")
        self.region = region
        self.configuration_set = configuration_set
        self._endpoint_url = endpoint_url
        self._client = lazy_client(
            self._creds,
            "sesv2",
            region=region,
            endpoint_url=endpoint_url,
            config=aio_config(
                max_pool_connections=max_pool_connections,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            ),
        )

    def _location(self) -> str:
        where = f"region={self.region!r}"
        if self._endpoint_url:
            where += f" endpoint_url={self._endpoint_url!r}"
        return where

    def _describe(self) -> BackendDescription:
        return BackendDescription.at("ses", None, self._endpoint_url)

    # ---------------------------------------------------------------- client

    async def _native_client(self) -> Any:
        """``await email.native()``: the aioboto3 SESv2 client."""
        return await self._client.get()

    async def _aclose(self) -> None:
        await self._client.aclose()

    # ----------------------------------------------------------------- hooks

    def _request(self, prepared: PreparedEmail) -> dict[str, Any]:
        request: dict[str, Any] = {"FromEmailAddress": _formatted(prepared.sender)}
        if prepared.attachments or prepared.headers:
            request["Destination"] = {"ToAddresses": prepared.envelope_recipients}
            request["Content"] = {"Raw": {"Data": prepared.mime}}
        else:
            destination: dict[str, list[str]] = {"ToAddresses": _formatted_all(prepared.to)}
            if prepared.cc:
                destination["CcAddresses"] = _formatted_all(prepared.cc)
            if prepared.bcc:
                destination["BccAddresses"] = _formatted_all(prepared.bcc)
            body: dict[str, Any] = {}
            if prepared.body_text is not None:
                body["Text"] = {"Data": prepared.body_text, "Charset": "UTF-8"}
            if prepared.body_html is not None:
                body["Html"] = {"Data": prepared.body_html, "Charset": "UTF-8"}
            request["Destination"] = destination
            request["Content"] = {
                "Simple": {
                    "Subject": {"Data": prepared.subject, "Charset": "UTF-8"},
                    "Body": body,
                }
            }
            if prepared.reply_to:
                request["ReplyToAddresses"] = _formatted_all(prepared.reply_to)
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return request

    async def _deliver(self, prepared: PreparedEmail) -> str:
        self._ensure_open()
        try:
            client = await self._client.get()
            answer = await client.send_email(**self._request(prepared))
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, prepared)
        return str(answer["MessageId"])

    async def _health(self) -> bool:
        client = await self._client.get()
        # A configuration-set listing (tiny answer) proves SES is reachable and accepts our
        # signature.
        # (GetAccount would do too, but moto, our test stand-in, does not implement it.)
        await client.list_configuration_sets()
        return True

    # ---------------------------------------------------------------- errors

    def _raise(self, exc: Exception, prepared: PreparedEmail) -> NoReturn:
        """Translate a botocore error into cloudrift's email errors (one place)."""
        secrets = self._creds.secrets
        if isinstance(exc, NoCredentialsError):
            raise EmailAuthenticationError(
                "ses email: no AWS credentials found; pass aws_access_key_id/"
                "aws_secret_access_key, profile_name or role_arn, or run with an IAM role"
            ) from exc
        if isinstance(exc, NoRegionError):
            raise ConfigurationError(
                "ses email: no AWS region; pass region='us-east-1' (or set AWS_DEFAULT_REGION)"
            ) from exc
        if isinstance(exc, _CONNECTION):
            raise EmailConnectionError(
                f"ses email: could not reach SES ({redact(str(exc), secrets)})"
            ) from exc
        if not isinstance(exc, ClientError):
            raise EmailSendError(f"ses email: {redact(str(exc), secrets)}") from exc
        details = client_error_details(exc, secrets)
        code, text = details.code, details.message
        sender = prepared.sender.addr
        if (
            code in THROTTLING_ERROR_CODES
            or "rate exceeded" in text.lower()
            or "quota" in text.lower()
        ):
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            retry_after = _seconds(headers.get("retry-after"))
            raise EmailThrottledError(
                f"ses email: SES is throttling ({code}: {text}); retry later",
                retry_after=retry_after,
            ) from exc
        if code in AUTH_ERROR_CODES:
            raise EmailAuthenticationError(
                f"ses email: SES refused the credentials ({code}: {text}); check the keys, "
                "profile or IAM role and its ses:SendEmail permission"
            ) from exc
        if code == "MailFromDomainNotVerifiedException":
            raise SenderUnverifiedError(
                f"ses email: the MAIL FROM domain of {sender} is not verified ({text})",
                sender=sender,
            ) from exc
        if code == "MessageRejected":
            named = {a.lower() for a in _ADDRESS.findall(text)}
            recipients = [r for r in prepared.envelope_recipients if r.lower() in named]
            low = text.lower()
            about_identity = "verif" in low or "authority to send from" in low
            if about_identity and (sender.lower() in named or not recipients):
                # SES lists the identities that failed; the sender among them (or no
                # recipient named) means the sender is unverified, not a refused recipient.
                raise SenderUnverifiedError(
                    f"ses email: the sender {sender} is not verified in SES ({text}); verify "
                    "the address or its domain in the SES console",
                    sender=sender,
                ) from exc
            if recipients:
                raise RecipientRejectedError(
                    f"ses email: SES rejected recipient(s) {', '.join(recipients)} ({text}); "
                    "in the SES sandbox recipients must be verified too",
                    recipients=recipients,
                ) from exc
            raise EmailSendError(f"ses email: SES rejected the message ({text})") from exc
        if code in ("BadRequestException", "InvalidParameterValue"):
            raise EmailValidationError(f"ses email: SES refused the request ({text})") from exc
        if code == "NotFoundException":
            raise ConfigurationError(
                f"ses email: {text}; check configuration_set and the region"
            ) from exc
        raise EmailSendError(f"ses email: SES refused the message ({code}: {text})") from exc


def _seconds(value: object) -> float | None:
    try:
        return float(str(value)) if value is not None else None
    except ValueError:
        return None


__all__ = ["SESEmail"]
