"""What the AWS messaging providers (SQS queues, SNS topics) share: how botocore errors
become messaging errors, how a message's size is counted, and how a batch answer
(``Successful`` / ``Failed`` entries) becomes per-message results."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from cloudrift.core.aws import connection_errors
from cloudrift.core.exceptions import (
    MessagingConnectionError,
    MessagingError,
    MessagingPermissionError,
)
from cloudrift.core.secrets import Secret, redact
from cloudrift.messaging.base import PreparedMessage, SendFailure

_CONNECTION = connection_errors()


@contextlib.contextmanager
def translate(
    where: str,
    service: str,
    secrets: Sequence[Secret | None],
    on_client_error: Callable[[ClientError], NoReturn],
) -> Iterator[None]:
    """Map botocore errors to the messaging family, chained and redacted; a
    ``ClientError`` goes to ``on_client_error`` (its codes are the service's own)."""
    try:
        yield
    except ClientError as exc:
        on_client_error(exc)
    except _CONNECTION as exc:
        raise MessagingConnectionError(
            f"{where}: cannot reach {service} ({type(exc).__name__}: {redact(str(exc), secrets)})"
        ) from exc
    except NoCredentialsError as exc:
        raise MessagingPermissionError(
            f"{where}: no AWS credentials found; pass keys, profile_name or "
            "role_arn, or run where a default credential chain is configured"
        ) from exc
    except BotoCoreError as exc:
        raise MessagingError(f"{where}: {type(exc).__name__}: {redact(str(exc), secrets)}") from exc


def attributes_out(attributes: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """String message attributes in the shape SQS and SNS both take."""
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}


def message_fields(msg: PreparedMessage) -> dict[str, Any]:
    """The attribute, FIFO group and dedup fields SQS SendMessage and SNS Publish share."""
    fields: dict[str, Any] = {}
    if msg.wire_attributes:
        fields["MessageAttributes"] = attributes_out(msg.wire_attributes)
    if msg.group_id is not None:
        fields["MessageGroupId"] = msg.group_id
    if msg.dedup_id is not None:
        fields["MessageDeduplicationId"] = msg.dedup_id
    return fields


def entry_size(msg: PreparedMessage) -> int:
    """The size AWS counts: the body, and each attribute's name, data type ("String")
    and value."""
    return len(msg.body) + sum(
        len(k.encode()) + len(b"String") + len(v.encode()) for k, v in msg.wire_attributes.items()
    )


def batch_results(
    answer: Mapping[str, Any], count: int, service: str, secrets: Sequence[Secret | None]
) -> list[str | SendFailure]:
    """Per entry (``Id`` is its index): the message id, or why the service refused it."""
    results: list[str | SendFailure] = [
        SendFailure(f"{service} reported neither success nor failure for this entry")
    ] * count
    for ok in answer.get("Successful", []):
        results[int(ok["Id"])] = str(ok["MessageId"])
    for bad in answer.get("Failed", []):
        reason = f"{bad.get('Code', 'Failed')}: {bad.get('Message', '')}".strip(": ")
        results[int(bad["Id"])] = SendFailure(redact(reason, secrets))
    return results
