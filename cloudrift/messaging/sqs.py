"""Amazon SQS (standard and FIFO) over aioboto3.

A queue whose URL ends in ``.fifo`` is FIFO: every message needs ``group_id``;
``dedup_id`` is optional when the queue has content-based deduplication; a per-message
delay is not supported (``FeatureNotSupportedError``) and ``DelaySeconds`` is never sent
(FIFO queues reject even an explicit 0); ``receive(group_id=)`` is not supported.
``dead_letter()`` needs ``dlq_url``: the message is sent there with its body, attributes,
group id and the reason, and deleted from the source only after that send succeeded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Unpack

from botocore.exceptions import ClientError

from cloudrift.core.aws import (
    AUTH_ERROR_CODES,
    NOT_FOUND_ERROR_CODES,
    AwsAuthOptions,
    aio_config,
    aws_auth_methods,
    aws_credentials,
    client_error_details,
    lazy_client,
)
from cloudrift.core.exceptions import (
    ConfigurationError,
    InvalidMessageError,
    MessageSendError,
    MessagingError,
    MessagingPermissionError,
    QueueNotFoundError,
    ReceiptHandleError,
)
from cloudrift.core.operation import BackendDescription
from cloudrift.core.secrets import Secret
from cloudrift.core.validation import check_number
from cloudrift.messaging._aws import (
    attributes_out,
    batch_results,
    entry_size,
    message_fields,
    translate,
)
from cloudrift.messaging.base import (
    DEAD_LETTER_REASON,
    InFlightMap,
    Message,
    PreparedMessage,
    Queue,
    SendFailure,
    SendLimits,
)

_AUTH_METHODS = aws_auth_methods()
_BAD_HANDLE = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle"}
_BAD_MESSAGE = {"InvalidMessageContents", "MessageTooLong", "InvalidParameterValue"}
_REGION_IN_URL = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
#: SQS's limit of message attributes per message.
_MAX_ATTRIBUTES = 10
#: SQS's longest visibility timeout (12 hours).
_MAX_VISIBILITY = 43200
#: SQS caps a single long poll at 20 seconds.
_MAX_POLL = 20


class SQSQueue(Queue):
    """One SQS queue. FIFO when ``queue_url`` ends in ``.fifo``."""

    provider = "sqs"
    max_receive_messages = 10
    # The rest (delay, groups, dedup, dead_letter) depend on the queue: see __init__.
    supports_visibility_timeout = True

    def __init__(
        self,
        *,
        queue_url: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        dlq_url: str | None = None,
        max_pool_connections: int = 50,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        max_in_flight: int = 10_000,
        **auth: Unpack[AwsAuthOptions],
    ) -> None:
        super().__init__()
        for name, url in (("queue_url", queue_url), ("dlq_url", dlq_url)):
            if url is None and name == "dlq_url":
                continue
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise ConfigurationError(
                    f"sqs: {name} must be the queue's full URL "
                    "(https://sqs.<region>.amazonaws.com/<account>/<name>), got "
                    f"{url!r}"
                )
        self._creds = aws_credentials("sqs", _AUTH_METHODS, **auth)
        self._auth = self._creds.method
        found = _REGION_IN_URL.search(queue_url)
        self.region = region or (found.group(1) if found else None)
        if not self.region:
            raise ConfigurationError(
                "sqs: region is required when it cannot be read from queue_url; pass region="
            )
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.fifo = queue_url.endswith(".fifo")
        self.backend_name = f"sqs queue {queue_url.rsplit('/', 1)[-1]!r}"
        self._endpoint_url = endpoint_url
        # A role is assumed through STS at endpoint_url (moto, LocalStack) when one is given.
        self._client = lazy_client(
            self._creds,
            "sqs",
            region=self.region,
            endpoint_url=endpoint_url,
            config=aio_config(
                max_pool_connections=max_pool_connections,
                connect_timeout=connect_timeout,
                read_timeout=max(
                    check_number("read_timeout", read_timeout, above=0), _MAX_POLL + 5
                ),
                max_attempts=max_attempts,
            ),
            sts_endpoint_url=endpoint_url,
        )
        self._in_flight: InFlightMap[Message] = InFlightMap(max_in_flight)
        self._max_message_bytes: int | None = None
        # Capabilities: the FIFO / standard rows of the seed's table.
        self.supports_delay = not self.fifo
        self.supports_groups = self.fifo
        self.supports_dedup = self.fifo
        self.supports_group_receive = False
        self.requires_group_id = self.fifo
        self.supports_dead_letter = dlq_url is not None
        # A standard queue keeps no order, so a big send_batch sends its 10-entry calls
        # 8 at a time; FIFO sends them in order (a group's order is its send order).
        self.batch_send_concurrency = 1 if self.fifo else 8
        self._dlq_fifo = bool(dlq_url and dlq_url.endswith(".fifo"))

    def __repr__(self) -> str:
        return f"SQSQueue(queue_url={self.queue_url!r}, region={self.region!r})"

    def _describe(self) -> BackendDescription:
        name = self.queue_url.rsplit("/", 1)[-1]
        return BackendDescription.at("aws_sqs", name, self._endpoint_url or self.queue_url)

    # ---------------------------------------------------------------- client

    def _secrets(self) -> list[Secret | None]:
        return list(self._creds.secrets)

    async def _native_client(self) -> Any:
        """``await queue.native()``: the aiobotocore SQS client."""
        return await self._client.get()

    async def _aclose(self) -> None:
        self._in_flight = InFlightMap(self._in_flight.max_size)
        await self._client.aclose()

    # -------------------------------------------------------------- errors

    def _translate(self, handle: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Map botocore errors to the messaging family, chained and redacted."""
        return translate(
            self.backend_name,
            "SQS",
            self._secrets(),
            functools.partial(self._raise_client_error, handle=handle),
        )

    def _raise_client_error(self, exc: ClientError, handle: str | None) -> NoReturn:
        details = client_error_details(exc, self._secrets())
        code, text = details.code, details.message
        where = f"{self.backend_name}: {code}: {text}"
        if code in NOT_FOUND_ERROR_CODES:
            raise QueueNotFoundError(f"{where}; check queue_url / dlq_url") from exc
        if code in AUTH_ERROR_CODES:
            raise MessagingPermissionError(where) from exc
        if code in _BAD_HANDLE or (handle is not None and "receipt" in text.lower()):
            raise ReceiptHandleError(
                f"{where}; the receipt handle is stale or invalid (receive the message again)"
            ) from exc
        if code in _BAD_MESSAGE:
            raise InvalidMessageError(where) from exc
        raise MessagingError(where) from exc

    # ---------------------------------------------------------------- sending

    async def _limits(self) -> SendLimits:
        if self._max_message_bytes is None:
            client = await self._client.get()
            with self._translate():
                answer = await client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["MaximumMessageSize"]
                )
            self._max_message_bytes = int(answer["Attributes"]["MaximumMessageSize"])
        # A batch's total size is capped by the same limit as one message.
        return SendLimits(
            max_message_bytes=self._max_message_bytes,
            max_batch_count=10,
            max_batch_bytes=self._max_message_bytes,
            max_delay=900,
            max_attributes=_MAX_ATTRIBUTES,  # trace context included
        )

    def _entry_size(self, msg: PreparedMessage) -> int:
        return entry_size(msg)

    def _params(self, msg: PreparedMessage) -> dict[str, Any]:
        params: dict[str, Any] = {"MessageBody": msg.body.decode("utf-8")}
        # Never send DelaySeconds=0: FIFO queues reject the parameter outright.
        if msg.delay > 0:
            params["DelaySeconds"] = math.ceil(msg.delay)
        return {**params, **message_fields(msg)}

    async def _send_one(self, msg: PreparedMessage) -> str:
        client = await self._client.get()
        with self._translate():
            answer = await client.send_message(QueueUrl=self.queue_url, **self._params(msg))
        return str(answer["MessageId"])

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        client = await self._client.get()
        entries = [{"Id": str(i), **self._params(msg)} for i, msg in enumerate(chunk)]
        with self._translate():
            answer = await client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return batch_results(answer, len(chunk), "SQS", self._secrets())

    # -------------------------------------------------------------- receiving

    async def _receive(
        self,
        max_messages: int,
        wait_time: float,
        visibility_timeout: float | None,
        group_id: str | None,
    ) -> list[Message]:
        if visibility_timeout is not None and visibility_timeout > _MAX_VISIBILITY:
            raise ValueError(f"visibility_timeout must be at most {_MAX_VISIBILITY}s on SQS")
        client = await self._client.get()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_time
        while True:
            remaining = max(0.0, deadline - loop.time())
            params: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": max_messages,
                "WaitTimeSeconds": min(_MAX_POLL, math.ceil(remaining)),
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }
            if visibility_timeout is not None:
                params["VisibilityTimeout"] = math.ceil(visibility_timeout)
            with self._translate():
                answer = await client.receive_message(**params)
            raw = answer.get("Messages", [])
            if raw or loop.time() >= deadline:
                return [self._message(m) for m in raw]

    def _payload(self, body: str, attributes: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """Hook: the payload bytes and attributes of a received body (as is, here)."""
        return body.encode("utf-8"), attributes

    def _message(self, raw: Mapping[str, Any]) -> Message:
        system = raw.get("Attributes", {})
        payload, attributes = self._payload(
            raw.get("Body", ""), _attributes_in(raw.get("MessageAttributes", {}))
        )
        msg = Message.from_raw(
            payload,
            receipt_handle=str(raw["ReceiptHandle"]),
            message_id=str(raw["MessageId"]),
            group_id=system.get("MessageGroupId"),
            dedup_id=system.get("MessageDeduplicationId"),
            receive_count=int(system.get("ApproximateReceiveCount", 1)),
            attributes=attributes,
        )
        # Remembered (bounded) so dead_letter() can resend body and attributes.
        self._in_flight.add(msg.receipt_handle, msg)
        return msg

    # ------------------------------------------------------- acting on a handle

    async def _delete(self, handle: str) -> None:
        client = await self._client.get()
        with self._translate(handle):
            await client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        self._in_flight.pop(handle)

    async def _nack(self, handle: str) -> None:
        await self._change_visibility(handle, 0)
        self._in_flight.pop(handle)

    async def _extend_visibility(self, handle: str, seconds: float) -> None:
        if seconds > _MAX_VISIBILITY:
            raise ValueError(f"visibility can be extended to at most {_MAX_VISIBILITY}s on SQS")
        await self._change_visibility(handle, math.ceil(seconds))

    async def _change_visibility(self, handle: str, seconds: int) -> None:
        client = await self._client.get()
        with self._translate(handle):
            await client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=seconds
            )

    async def _dead_letter(self, handle: str, reason: str) -> None:
        msg = self._in_flight.get(handle)
        if msg is None:
            raise ReceiptHandleError(
                f"{self.backend_name}: dead_letter() needs a message received by this "
                "instance (the handle is unknown, already acked, or was received elsewhere)"
            )
        attributes = {**msg.attributes, DEAD_LETTER_REASON: reason}
        # The producer's trace context moves too (whoever drains the DLQ joins its trace)
        # where the 10-attribute limit leaves room next to the user's and the reason.
        for key, value in msg.transport_headers.items():
            if len(attributes) < _MAX_ATTRIBUTES:
                attributes[key] = value
        params: dict[str, Any] = {
            "QueueUrl": self.dlq_url,
            "MessageBody": msg.raw.decode("utf-8"),
            "MessageAttributes": attributes_out(attributes),
        }
        if self._dlq_fifo:
            # A FIFO DLQ needs a group: keep the original one so order survives.
            params["MessageGroupId"] = msg.group_id or "dead-letter"
            # The source message id makes a retried dead_letter() idempotent.
            params["MessageDeduplicationId"] = msg.message_id
        client = await self._client.get()
        try:
            with self._translate():
                await client.send_message(**params)
        except MessagingError as exc:
            # The message stays on the source queue; it comes back after its timeout.
            raise MessageSendError(
                f"{self.backend_name}: could not move the message to the dead-letter queue; "
                f"it stays on the source queue ({exc})",
                failed={0: str(exc)},
            ) from exc
        await self._delete(handle)

    # -------------------------------------------------------------------- misc

    async def _purge(self) -> None:
        client = await self._client.get()
        with self._translate():
            await client.purge_queue(QueueUrl=self.queue_url)
        self._in_flight = InFlightMap(self._in_flight.max_size)

    async def _health(self) -> bool:
        client = await self._client.get()
        with self._translate():
            await client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        return True


class SQSSubscription(SQSQueue):
    """An SQS queue subscribed to an SNS topic, consumed as a queue.

    (Its ``category`` is ``subscription``: how settings and telemetry name it.)

    Delivers the publisher's payload and attributes whether the SNS subscription has
    raw message delivery on (the body *is* the payload) or off (the body is SNS's JSON
    envelope, whose ``Message`` and ``MessageAttributes`` are unwrapped). A message
    that is not an SNS envelope (sent to the queue directly) is delivered as it is.
    """

    category = "subscription"

    def __repr__(self) -> str:
        return f"SQSSubscription(queue_url={self.queue_url!r}, region={self.region!r})"

    def _payload(self, body: str, attributes: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        envelope = _sns_envelope(body)
        if envelope is None:
            return body.encode("utf-8"), attributes
        unwrapped = dict(attributes)
        for name, value in (envelope.get("MessageAttributes") or {}).items():
            if isinstance(value, Mapping) and isinstance(value.get("Value"), str):
                unwrapped[str(name)] = value["Value"]
        return str(envelope["Message"]).encode("utf-8"), unwrapped


def _sns_envelope(body: str) -> Mapping[str, Any] | None:
    """SNS's notification envelope when ``body`` is one (raw delivery off), else None."""
    if not body.startswith("{") or '"TopicArn"' not in body:
        return None  # cheap reject: most bodies are not envelopes
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(parsed, dict)
        and parsed.get("Type") == "Notification"
        and isinstance(parsed.get("TopicArn"), str)
        and isinstance(parsed.get("Message"), str)
    ):
        return parsed
    return None


def _attributes_in(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw.items():
        if "StringValue" in value:
            out[name] = str(value["StringValue"])
        elif "BinaryValue" in value:
            # Binary attributes from foreign producers arrive as base64 text.
            out[name] = base64.b64encode(bytes(value["BinaryValue"])).decode("ascii")
    return out


__all__ = ["SQSQueue", "SQSSubscription"]
