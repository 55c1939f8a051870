"""Create topics and subscriptions for development and tests — never called implicitly.

``get_topic`` / ``get_subscription`` only use what exists; production infrastructure
belongs in your infrastructure code (Terraform, CDK, Bicep...). These helpers make the
same shapes on a stand-in (moto, a local redis-server) or a sandbox account:

* :func:`create_sns_topic` — an SNS topic (FIFO with content-based deduplication when
  ``fifo=True``); returns its ARN;
* :func:`subscribe_sqs_queue` — an SQS queue (and its dead-letter queue) subscribed to
  the topic, with raw message delivery on or off and an optional filter policy;
* :func:`create_redis_group` — a consumer group on a redis stream (a redis subscription).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cloudrift.core.aws import aio_config, aws_auth_methods, aws_credentials, open_client
from cloudrift.core.secrets import Secret

_AUTH_METHODS = aws_auth_methods()


@dataclass(frozen=True)
class SQSSubscriptionInfo:
    """What :func:`subscribe_sqs_queue` made: pass ``queue_url`` (and ``dlq_url``) to
    ``get_subscription("sqs", ...)``."""

    queue_url: str
    queue_arn: str
    subscription_arn: str
    dlq_url: str | None = None


@asynccontextmanager
async def _aws_clients(
    *services: str,
    region: str,
    endpoint_url: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | Secret | None,
    aws_session_token: str | Secret | None,
    profile_name: str | None,
) -> AsyncIterator[list[Any]]:
    creds = aws_credentials(
        "provision",
        _AUTH_METHODS,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        profile_name=profile_name,
    )
    async with AsyncExitStack() as stack:
        yield [
            await open_client(
                stack,
                creds,
                service,
                region=region,
                endpoint_url=endpoint_url,
                config=aio_config(
                    max_pool_connections=2, connect_timeout=5, read_timeout=30, max_attempts=3
                ),
            )
            for service in services
        ]


async def create_sns_topic(
    name: str,
    *,
    fifo: bool = False,
    region: str,
    endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | Secret | None = None,
    aws_session_token: str | Secret | None = None,
    profile_name: str | None = None,
) -> str:
    """Create (or find: SNS's create is idempotent) a topic and return its ARN.

    ``fifo=True`` adds the ``.fifo`` suffix and turns on content-based deduplication.
    """
    attributes: dict[str, str] = {}
    if fifo:
        name = name if name.endswith(".fifo") else f"{name}.fifo"
        attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    async with _aws_clients(
        "sns",
        region=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        profile_name=profile_name,
    ) as (sns,):
        answer = await sns.create_topic(Name=name, Attributes=attributes)
    return str(answer["TopicArn"])


async def subscribe_sqs_queue(
    topic_arn: str,
    queue_name: str,
    *,
    raw_delivery: bool = False,
    dead_letter_queue: bool = True,
    filter_policy: Mapping[str, Any] | None = None,
    visibility_timeout: int = 30,
    region: str,
    endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | Secret | None = None,
    aws_session_token: str | Secret | None = None,
    profile_name: str | None = None,
) -> SQSSubscriptionInfo:
    """Create an SQS queue (plus ``<name>-dlq`` when ``dead_letter_queue``), allow the
    topic to send to it, and subscribe it to ``topic_arn``.

    A FIFO topic gets FIFO queues (``.fifo`` added to the names). ``raw_delivery``
    sets the subscription's RawMessageDelivery; ``filter_policy`` its FilterPolicy
    (SNS then filters by message attributes; cloudrift never filters client-side).
    """
    fifo = topic_arn.endswith(".fifo")
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    if fifo:
        attributes |= {"FifoQueue": "true", "ContentBasedDeduplication": "true"}

    def queue_name_for(base: str) -> str:
        return f"{base.removesuffix('.fifo')}.fifo" if fifo else base

    async with _aws_clients(
        "sns",
        "sqs",
        region=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        profile_name=profile_name,
    ) as (sns, sqs):
        dlq_url: str | None = None
        if dead_letter_queue:
            made = await sqs.create_queue(
                QueueName=queue_name_for(f"{queue_name.removesuffix('.fifo')}-dlq"),
                Attributes=attributes,
            )
            dlq_url = str(made["QueueUrl"])
        made = await sqs.create_queue(QueueName=queue_name_for(queue_name), Attributes=attributes)
        queue_url = str(made["QueueUrl"])
        answer = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        queue_arn = str(answer["Attributes"]["QueueArn"])
        # Real SQS refuses SNS's deliveries unless the queue policy allows the topic.
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
        await sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)}
        )
        sub_attributes = {"RawMessageDelivery": "true" if raw_delivery else "false"}
        if filter_policy is not None:
            sub_attributes["FilterPolicy"] = json.dumps(filter_policy)
        subscribed = await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=sub_attributes,
            ReturnSubscriptionArn=True,
        )
    return SQSSubscriptionInfo(
        queue_url=queue_url,
        queue_arn=queue_arn,
        subscription_arn=str(subscribed["SubscriptionArn"]),
        dlq_url=dlq_url,
    )


async def create_redis_group(
    stream: str,
    group: str,
    *,
    start: str = "latest",
    url: str | Secret | None = None,
    password: str | Secret | None = None,
) -> None:
    """Create consumer group ``group`` on ``stream`` (and the stream), as
    ``get_subscription("redis", stream=..., group=..., start=...)`` would on its first
    receive; a group that already exists is left as it is."""
    from cloudrift.messaging.redis_topic import RedisSubscription

    async with RedisSubscription(
        stream=stream,
        group=group,
        start=start,  # type: ignore[arg-type]  # checked by RedisSubscription
        url=url,
        password=password,
    ) as subscription:
        await subscription._ensure_group()


__all__ = [
    "SQSSubscriptionInfo",
    "create_redis_group",
    "create_sns_topic",
    "subscribe_sqs_queue",
]
