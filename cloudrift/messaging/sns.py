"""Amazon SNS topics (standard and FIFO) over aioboto3.

A topic whose ARN ends in ``.fifo`` is FIFO: every message needs ``group_id``, and
``dedup_id`` is optional when the topic has content-based deduplication. ``publish_batch``
goes out as ``PublishBatch`` calls of at most 10 entries / 256 KiB; each entry SNS
refuses is reported in ``MessageSendError.failed``. Subscriptions are SQS queues
subscribed to the topic: consume them with ``get_subscription("sqs", queue_url=...)``,
which unwraps SNS's JSON envelope when raw message delivery is off.

Filter policies (attribute filtering) are SNS subscription configuration: set
``FilterPolicy`` on the subscription; nothing is filtered client-side.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
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
    MessagingError,
    MessagingPermissionError,
    TopicNotFoundError,
)
from cloudrift.core.operation import BackendDescription
from cloudrift.core.secrets import Secret
from cloudrift.messaging._aws import batch_results, entry_size, message_fields, translate
from cloudrift.messaging.base import PreparedMessage, SendFailure, SendLimits
from cloudrift.messaging.topic import Topic

_AUTH_METHODS = aws_auth_methods()
_BAD_MESSAGE = {"InvalidParameter", "InvalidParameterValue", "ParameterValueInvalid"}
_ARN = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
#: SNS's message size limit (also the total of one PublishBatch).
MAX_MESSAGE_BYTES = 256 * 1024


class SNSTopic(Topic):
    """One SNS topic. FIFO when ``topic_arn`` ends in ``.fifo``."""

    provider = "sns"

    def __init__(
        self,
        *,
        topic_arn: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_pool_connections: int = 50,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        **auth: Unpack[AwsAuthOptions],
    ) -> None:
        super().__init__()
        found = _ARN.match(topic_arn) if isinstance(topic_arn, str) else None
        if found is None:
            raise ConfigurationError(
                "sns: topic_arn must be the topic's ARN "
                f"(arn:aws:sns:<region>:<account>:<name>), got {topic_arn!r}"
            )
        self._creds = aws_credentials("sns", _AUTH_METHODS, **auth)
        self.topic_arn = topic_arn
        self.region = region or found.group(1)
        self.fifo = topic_arn.endswith(".fifo")
        self.backend_name = f"sns topic {topic_arn.rsplit(':', 1)[-1]!r}"
        self._endpoint_url = endpoint_url
        self._client = lazy_client(
            self._creds,
            "sns",
            region=self.region,
            endpoint_url=endpoint_url,
            config=aio_config(
                max_pool_connections=max_pool_connections,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            ),
            sts_endpoint_url=endpoint_url,
        )
        self.supports_groups = self.fifo
        self.supports_dedup = self.fifo
        self.requires_group_id = self.fifo
        # A standard topic keeps no order, so a big publish_batch sends its 10-entry
        # calls 8 at a time; FIFO sends them in order (a group's order is its send order).
        self.batch_send_concurrency = 1 if self.fifo else 8

    def __repr__(self) -> str:
        return f"SNSTopic(topic_arn={self.topic_arn!r}, region={self.region!r})"

    # ---------------------------------------------------------------- client

    def _secrets(self) -> list[Secret | None]:
        return list(self._creds.secrets)

    def _describe(self) -> BackendDescription:
        name = self.topic_arn.rsplit(":", 1)[-1]
        return BackendDescription.at("aws_sns", name, self._endpoint_url)

    async def _native_client(self) -> Any:
        """``await topic.native()``: the aiobotocore SNS client."""
        return await self._client.get()

    async def _aclose(self) -> None:
        await self._client.aclose()

    # -------------------------------------------------------------- errors

    def _translate(self) -> contextlib.AbstractContextManager[None]:
        """Map botocore errors to the messaging family, chained and redacted."""
        return translate(self.backend_name, "SNS", self._secrets(), self._raise_client_error)

    def _raise_client_error(self, exc: ClientError) -> NoReturn:
        details = client_error_details(exc, self._secrets())
        code, text = details.code, details.message
        where = f"{self.backend_name}: {code}: {text}"
        if code in NOT_FOUND_ERROR_CODES:
            raise TopicNotFoundError(
                self.topic_arn,
                f"{where}; topic {self.topic_arn!r} does not exist (check topic_arn)",
            ) from exc
        if code in AUTH_ERROR_CODES:
            raise MessagingPermissionError(where) from exc
        if code in _BAD_MESSAGE:
            raise InvalidMessageError(where) from exc
        raise MessagingError(where) from exc

    # ---------------------------------------------------------------- sending

    async def _limits(self) -> SendLimits:
        return SendLimits(
            max_message_bytes=MAX_MESSAGE_BYTES,
            max_batch_count=10,
            max_batch_bytes=MAX_MESSAGE_BYTES,
        )

    def _entry_size(self, msg: PreparedMessage) -> int:
        return entry_size(msg)

    @staticmethod
    def _params(msg: PreparedMessage) -> dict[str, Any]:
        return {"Message": msg.body.decode("utf-8"), **message_fields(msg)}

    async def _send_one(self, msg: PreparedMessage) -> str:
        client = await self._client.get()
        with self._translate():
            answer = await client.publish(TopicArn=self.topic_arn, **self._params(msg))
        return str(answer["MessageId"])

    async def _send_chunk(self, chunk: Sequence[PreparedMessage]) -> Sequence[str | SendFailure]:
        client = await self._client.get()
        entries = [{"Id": str(i), **self._params(msg)} for i, msg in enumerate(chunk)]
        with self._translate():
            answer = await client.publish_batch(
                TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
            )
        return batch_results(answer, len(chunk), "SNS", self._secrets())

    # -------------------------------------------------------------------- misc

    async def _health(self) -> bool:
        client = await self._client.get()
        with self._translate():
            await client.get_topic_attributes(TopicArn=self.topic_arn)
        return True


__all__ = ["SNSTopic"]
