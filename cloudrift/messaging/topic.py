"""The publish side of pub/sub: the :class:`Topic` contract.

A topic fans every published message out to each of its subscriptions; a subscription
*is* a :class:`~cloudrift.messaging.base.Queue` (``get_subscription``), consumed exactly
like one. Publishing shares the queue's sending work (:class:`~cloudrift.messaging.base.
MessageSender`): the same JSON encoding, validation, size check, batch splitting and
per-entry failure accounting, so ``publish`` behaves as ``Queue.send`` and
``publish_batch`` as ``Queue.send_batch``.

Providers implement the same sending hooks as a queue (``_send_one``, optionally
``_send_chunk`` / ``_send_entries`` / ``_limits`` / ``_entry_size``) plus ``_health``,
``_aclose``, ``_describe`` and ``_native_client``. Every public method runs through
:func:`~cloudrift.core.operation.operation`, as the queue's do. Topics have no
per-message delay (``supports_delay`` stays False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cloudrift.core.operation import operation
from cloudrift.messaging.base import MessageSender, OutgoingMessage


class Topic(MessageSender):
    """A topic: every message published reaches every subscription once.

    Delivery to each subscription is at-least-once, with that subscription's queue
    semantics. A subscription receives only what was published after it existed.
    """

    backend_name = "topic"
    category = "topic"
    #: Provider name as given to ``get_topic``.
    provider: ClassVar[str] = "abstract"

    @operation
    async def publish(
        self,
        payload: Any,
        *,
        attributes: Mapping[str, str] | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> str:
        """Publish one JSON-serialisable payload and return its message id.

        Same checks and errors as ``Queue.send``: TypeError for a payload that is not
        JSON-serialisable, MessageTooLargeError (with the limit) for an oversized one,
        FeatureNotSupportedError for ``group_id`` / ``dedup_id`` where the topic cannot
        honour them, InvalidMessageError for a bad attribute or a missing ``group_id``
        on a FIFO topic — all before anything is published.
        """
        return await self._send_validated(
            OutgoingMessage(payload, 0, group_id, dedup_id, attributes)
        )

    @operation
    async def publish_batch(
        self,
        payloads: Sequence[Any],
        *,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> list[str]:
        """Publish many messages and return their ids in input order.

        As ``Queue.send_batch``: entries are plain payloads or ``OutgoingMessage``
        (``delay`` must stay 0), split into provider-legal batches; a bad entry raises
        before anything is published; if some entries fail, MessageSendError is raised
        whose ``succeeded`` and ``failed`` cover every entry.
        """
        return await self._send_many(
            payloads, group_id=group_id, dedup_id=dedup_id, what="publish_batch"
        )


__all__ = ["Topic"]
