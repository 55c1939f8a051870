"""Message queues: ``get_queue(provider, **options)`` and the portable types.

Providers: ``sqs`` (FIFO when the URL ends in ``.fifo``), ``azure_bus`` (Service Bus,
``session_enabled=True`` for session queues), ``gcp_pubsub`` (a Pub/Sub topic plus one
subscription), ``redis`` (Redis Streams with a consumer
group: the self-hosted queue) and ``memory`` (in-process, for dev and tests).
Importing this package imports no SDK; a provider's SDK is imported when it is chosen.

Pub/sub: ``get_topic(provider, **options)`` returns a :class:`Topic` (``publish``,
``publish_batch``); ``get_subscription(provider, **options)`` returns a :class:`Queue`
that receives every message published to its topic after it existed.
"""

from __future__ import annotations

from typing import Any

from cloudrift.core.factory import ProviderSpec, build_provider
from cloudrift.messaging.base import (
    DEAD_LETTER_REASON,
    Handler,
    Message,
    OutgoingMessage,
    Queue,
)
from cloudrift.messaging.topic import Topic

PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.messaging.memory", "MemoryQueue"),
    "sqs": ProviderSpec("cloudrift.messaging.sqs", "SQSQueue", extra="aws", requires=("aioboto3",)),
    "azure_bus": ProviderSpec(
        "cloudrift.messaging.azure_bus",
        "AzureServiceBusQueue",
        extra="azure",
        requires=("azure.servicebus",),
    ),
    "gcp_pubsub": ProviderSpec(
        "cloudrift.messaging.gcp_pubsub",
        "GcpPubSubQueue",
        extra="gcp",
        requires=("gcloud.aio.pubsub",),
    ),
    "redis": ProviderSpec(
        "cloudrift.messaging.redis_streams",
        "RedisStreamQueue",
        extra="redis",
        requires=("redis",),
    ),
}

#: Topic providers for :func:`get_topic`.
TOPIC_PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.messaging.memory_topic", "MemoryTopic"),
    "sns": ProviderSpec("cloudrift.messaging.sns", "SNSTopic", extra="aws", requires=("aioboto3",)),
    "redis": ProviderSpec(
        "cloudrift.messaging.redis_topic", "RedisTopic", extra="redis", requires=("redis",)
    ),
    "azure_bus": ProviderSpec(
        "cloudrift.messaging.azure_bus",
        "AzureServiceBusTopic",
        extra="azure",
        requires=("azure.servicebus",),
    ),
    "gcp_pubsub": ProviderSpec(
        "cloudrift.messaging.gcp_pubsub",
        "GcpPubSubTopic",
        extra="gcp",
        requires=("gcloud.aio.pubsub",),
    ),
}

#: Subscription providers for :func:`get_subscription` (each builds a :class:`Queue`).
SUBSCRIPTION_PROVIDERS: dict[str, ProviderSpec] = {
    "memory": ProviderSpec("cloudrift.messaging.memory_topic", "MemorySubscription"),
    "sqs": ProviderSpec(
        "cloudrift.messaging.sqs", "SQSSubscription", extra="aws", requires=("aioboto3",)
    ),
    "redis": ProviderSpec(
        "cloudrift.messaging.redis_topic", "RedisSubscription", extra="redis", requires=("redis",)
    ),
    "azure_bus": ProviderSpec(
        "cloudrift.messaging.azure_bus",
        "AzureServiceBusSubscription",
        extra="azure",
        requires=("azure.servicebus",),
    ),
    "gcp_pubsub": ProviderSpec(
        "cloudrift.messaging.gcp_pubsub",
        "GcpPubSubSubscription",
        extra="gcp",
        requires=("gcloud.aio.pubsub",),
    ),
}


def get_queue(provider: str, **options: Any) -> Queue:
    """Build the queue backend for ``provider`` (see :data:`PROVIDERS`).

    Raises ConfigurationError for an unknown provider (listing the valid ones), an
    unknown or misspelled option, bad credentials, or a missing extra (naming the
    ``pip install`` that fixes it).
    """
    queue: Queue = build_provider("messaging", provider, PROVIDERS, options)
    return queue


def get_topic(provider: str, **options: Any) -> Topic:
    """Build the topic backend for ``provider`` (see :data:`TOPIC_PROVIDERS`).

    Raises ConfigurationError for an unknown provider (listing the valid ones), an
    unknown or misspelled option, or a missing extra. Nothing is created on the
    service: provisioning is :mod:`cloudrift.messaging.provision`'s job (dev and tests).
    """
    topic: Topic = build_provider("topic", provider, TOPIC_PROVIDERS, options)
    return topic


def get_subscription(provider: str, **options: Any) -> Queue:
    """Build the consuming side of a topic subscription: a :class:`Queue`
    (see :data:`SUBSCRIPTION_PROVIDERS`). Errors as :func:`get_topic`."""
    subscription: Queue = build_provider("subscription", provider, SUBSCRIPTION_PROVIDERS, options)
    return subscription


__all__ = [
    "DEAD_LETTER_REASON",
    "PROVIDERS",
    "SUBSCRIPTION_PROVIDERS",
    "TOPIC_PROVIDERS",
    "Handler",
    "Message",
    "OutgoingMessage",
    "Queue",
    "Topic",
    "get_queue",
    "get_subscription",
    "get_topic",
]
