"""Message queues: ``get_queue(provider, **options)`` and the portable types.

Providers: ``sqs`` (FIFO when the URL ends in ``.fifo``), ``azure_bus`` (Service Bus,
``session_enabled=True`` for session queues), ``gcp_pubsub`` (a Pub/Sub topic plus one
subscription), ``redis`` (Redis Streams with a consumer
group: the self-hosted queue) and ``memory`` (in-process, for dev and tests).
Importing this package imports no SDK; a provider's SDK is imported when it is chosen.
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


def get_queue(provider: str, **options: Any) -> Queue:
    """Build the queue backend for ``provider`` (see :data:`PROVIDERS`).

    Raises ConfigurationError for an unknown provider (listing the valid ones), an
    unknown or misspelled option, bad credentials, or a missing extra (naming the
    ``pip install`` that fixes it).
    """
    queue: Queue = build_provider("messaging", provider, PROVIDERS, options)
    return queue


__all__ = [
    "DEAD_LETTER_REASON",
    "PROVIDERS",
    "Handler",
    "Message",
    "OutgoingMessage",
    "Queue",
    "get_queue",
]
