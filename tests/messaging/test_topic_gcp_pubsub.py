"""Pub/Sub topics and subscriptions (the service's native model) pass the topic
conformance suite on the REST stand-in; settings, health and ``cloudrift worker
--subscription`` serve them like every other provider."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    MessageSendError,
    MessageTooLargeError,
    QueueNotFoundError,
    TopicNotFoundError,
)
from cloudrift.messaging import Message, Queue, Topic, get_subscription, get_topic
from cloudrift.messaging.gcp_pubsub import GcpPubSubSubscription, GcpPubSubTopic
from cloudrift_fastapi import cloudrift_lifespan, health_router
from tests.cli._support import Child, wait_for
from tests.conformance.messaging import drain
from tests.conformance.topic import TopicConformance
from tests.servers.pubsub import PubSubEndpoint


def _topic(pubsub: PubSubEndpoint, name: str, **options: Any) -> Topic:
    return get_topic(
        "gcp_pubsub", project=pubsub.project, topic=name, emulator_host=pubsub.host, **options
    )


def _subscription(pubsub: PubSubEndpoint, name: str, **options: Any) -> Queue:
    return get_subscription(
        "gcp_pubsub",
        project=pubsub.project,
        subscription=name,
        emulator_host=pubsub.host,
        **options,
    )


class TestGcpPubSubTopic(TopicConformance):
    """Subscriptions created with message ordering: groups (ordering keys) work, dedup
    does not exist on Pub/Sub; one publish request carries up to 1,000 messages."""

    unsupported = frozenset({"dedup"})
    batch_parts = (25,)
    # The stand-in fans a publish out before answering it.
    settle_wait = 0.0

    @pytest.fixture
    async def backend(self, pubsub: PubSubEndpoint) -> AsyncIterator[Topic]:
        self._pubsub = pubsub
        self._topic_name = f"events-{uuid.uuid4().hex[:8]}"
        pubsub.create_topic(self._topic_name)
        topic = _topic(pubsub, self._topic_name)
        try:
            yield topic
        finally:
            await topic.close()

    async def open_subscription(self, backend: Topic, name: str) -> Queue:
        dlq = f"{name}-dead"
        self._pubsub.create_topic(dlq)
        self._pubsub.create_subscription(f"{dlq}-sub", dlq)
        self._pubsub.create_subscription(
            f"sub-{name}", self._topic_name, ack_deadline=30, ordering=True
        )
        return _subscription(self._pubsub, f"sub-{name}", dead_letter_topic=dlq)

    async def send_foreign(self, subscription: Queue, raw: bytes) -> None:
        message = {"data": base64.b64encode(raw).decode()}
        path = f"{self._pubsub.topic_path(self._topic_name)}:publish"
        self._pubsub.request("POST", path, {"messages": [message]})

    async def read_dead_letters(self, subscription: Queue, count: int) -> list[Message]:
        assert isinstance(subscription, GcpPubSubSubscription)
        async with _subscription(self._pubsub, f"{subscription.dead_letter_topic}-sub") as dlq:
            return await drain(dlq, count)

    async def test_oversized_publish_names_the_limit(self, backend: Topic) -> None:
        """Over Pub/Sub's 10 MB (counted as the base64 the REST API carries) raises,
        unpublished (the suite's 1 MiB payload is within Pub/Sub's limit)."""
        subscription = await self.subscribe(backend, "big")
        big = {"blob": "x" * 7_600_000}  # ~10.1 MB once base64-encoded
        with pytest.raises(MessageTooLargeError) as info:
            await backend.publish(big)
        assert str(info.value.limit) in str(info.value)
        with pytest.raises(MessageTooLargeError, match="batch entry 1"):
            await backend.publish_batch([{"small": 1}, big])
        assert await subscription.receive(max_messages=10, wait_time=0) == []
        assert self._pubsub.state.calls["publish"] == 0


# --------------------------------------------------------------------- bad input


async def test_unknown_topic_raises_topic_not_found_naming_it_fast(
    pubsub: PubSubEndpoint,
) -> None:
    """Publishing to a topic that does not exist raises TopicNotFoundError naming it at
    once (a 404 is never retried); health_check() is False."""
    async with _topic(pubsub, "no-such-topic") as topic:
        began = time.monotonic()
        with pytest.raises(TopicNotFoundError, match="no-such-topic") as info:
            await topic.publish({"n": 1})
        assert time.monotonic() - began < 5
        assert isinstance(info.value, QueueNotFoundError)
        assert info.value.topic == pubsub.topic_path("no-such-topic")
        assert "check topic=" in str(info.value)
        assert await topic.health_check() is False
    assert pubsub.state.calls["publish"] == 1


async def test_publish_batch_to_an_unknown_topic_raises_topic_not_found(
    pubsub: PubSubEndpoint,
) -> None:
    """publish_batch to a topic that does not exist raises TopicNotFoundError naming it
    (not a MessageSendError with a failure per entry), after one publish request."""
    async with _topic(pubsub, "no-such-topic") as topic:
        with pytest.raises(TopicNotFoundError, match="no-such-topic"):
            await topic.publish_batch([{"n": n} for n in range(3)])
    assert pubsub.state.calls["publish"] == 1


async def test_unknown_subscription_raises_topic_not_found_naming_it(
    pubsub: PubSubEndpoint,
) -> None:
    """Receiving from a subscription that does not exist raises TopicNotFoundError naming
    the subscription, without retrying; health_check() is False."""
    async with _subscription(pubsub, "no-such-sub") as subscription:
        with pytest.raises(TopicNotFoundError, match=r"subscription .*no-such-sub") as info:
            await subscription.receive(wait_time=0)
        assert info.value.topic == pubsub.subscription_path("no-such-sub")
        assert await subscription.health_check() is False
    assert pubsub.state.calls["pull"] == 1


async def test_a_missing_dead_letter_topic_is_named_and_the_message_stays(
    pubsub: PubSubEndpoint,
) -> None:
    """dead_letter() to a dead_letter_topic that does not exist names that topic (and the
    option), and leaves the message on the subscription."""
    pubsub.create_topic("events")
    pubsub.create_subscription("audit", "events")
    async with (
        _topic(pubsub, "events") as topic,
        _subscription(pubsub, "audit", dead_letter_topic="gone-dlq") as audit,
    ):
        await topic.publish({"n": 1})
        [msg] = await audit.receive(wait_time=1)
        with pytest.raises(MessageSendError, match=r"gone-dlq.*dead_letter_topic=") as info:
            await audit.dead_letter(msg.receipt_handle, "bad")
        assert isinstance(info.value.__cause__, TopicNotFoundError)
        await audit.nack(msg.receipt_handle)
        [again] = await audit.receive(wait_time=1)
    assert again.message_id == msg.message_id and pubsub.state.calls["acknowledge"] == 0


async def test_a_subscription_cannot_be_sent_to(pubsub: PubSubEndpoint) -> None:
    """send / send_batch on a subscription raise FeatureNotSupportedError naming the
    topic as the way; nothing is published."""
    pubsub.create_topic("events")
    pubsub.create_subscription("audit", "events")
    async with _subscription(pubsub, "audit") as audit:
        with pytest.raises(FeatureNotSupportedError, match="publish to its topic"):
            await audit.send({"n": 1})
        with pytest.raises(FeatureNotSupportedError, match="publish to its topic"):
            await audit.send_batch([{"n": 1}, {"n": 2}])
    assert pubsub.state.calls["publish"] == 0


async def test_publish_batch_of_1000_is_one_publish_request(pubsub: PubSubEndpoint) -> None:
    """publish_batch of 1,000 small messages is one publish request, ids in order."""
    pubsub.create_topic("events")
    pubsub.create_subscription("audit", "events")
    async with _topic(pubsub, "events") as topic:
        ids = await topic.publish_batch([{"n": n} for n in range(1000)])
    assert pubsub.state.calls["publish"] == 1 and len(set(ids)) == 1000
    with pubsub.state.cond:
        stored = pubsub.state.subscriptions[pubsub.subscription_path("audit")].deliveries
        assert [d.message.message_id for d in stored] == ids


def test_options_are_checked_strictly() -> None:
    """Paths for names, a bad project and misspelled options raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match="short topic name"):
        get_topic("gcp_pubsub", project="cloudrift-test", topic="projects/p/topics/t")
    with pytest.raises(ConfigurationError, match="short subscription name"):
        get_subscription("gcp_pubsub", project="cloudrift-test", subscription="a")
    with pytest.raises(ConfigurationError, match="project"):
        get_topic("gcp_pubsub", project="Bad Project", topic="events")
    with pytest.raises(ConfigurationError, match="emulator_host"):
        get_topic("gcp_pubsub", project="cloudrift-test", topic="events", emulater_host="h:1")
    with pytest.raises(ConfigurationError, match="unknown option"):
        GcpPubSubTopic(project="cloudrift-test", topic="events", emulater_host="h:1")  # type: ignore[call-arg]


def test_repr_names_the_resource_and_no_credentials() -> None:
    """repr shows project, topic / subscription and the auth method, never a key path."""
    secret = "/secret/place/key.json"
    topic = get_topic(
        "gcp_pubsub", project="cloudrift-test", topic="events", credentials_path=secret
    )
    sub = get_subscription(
        "gcp_pubsub", project="cloudrift-test", subscription="audit", credentials_path=secret
    )
    assert "topic='events'" in repr(topic) and "subscription='audit'" in repr(sub)
    assert secret not in repr(topic) + repr(sub)


# ------------------------------------------------------------ settings and workers


def _yaml(pubsub: PubSubEndpoint) -> str:
    return (
        f"topic:\n  provider: gcp_pubsub\n  project: {pubsub.project}\n  topic: events\n"
        f"  emulator_host: {pubsub.host}\n"
        "subscription:\n  default: audit\n  backends:\n    audit:\n"
        f"      provider: gcp_pubsub\n      project: {pubsub.project}\n"
        f"      subscription: audit\n      emulator_host: {pubsub.host}\n"
        "      read_timeout: 10\n"
    )


def test_settings_sections_build_topics_and_subscriptions_with_health(
    pubsub: PubSubEndpoint, tmp_path: Path
) -> None:
    """topic / subscription sections in YAML build gcp_pubsub backends; /health/ready
    reports each, and 503 names the subscription once it is gone."""
    pubsub.create_topic("events")
    pubsub.create_subscription("audit", "events")
    config = tmp_path / "gcp.yaml"
    config.write_text(_yaml(pubsub))
    settings = CloudriftSettings.from_yaml(config)
    app = FastAPI(lifespan=cloudrift_lifespan(settings))
    app.include_router(health_router())
    with TestClient(app) as client:
        body = client.get("/health/ready").json()
        assert body["backends"]["topic.default"] == {"provider": "gcp_pubsub", "status": "ok"}
        assert body["backends"]["subscription.audit"]["status"] == "ok"
        pubsub.request("DELETE", pubsub.subscription_path("audit"))
        gone = client.get("/health/ready")
    assert gone.status_code == 503
    assert gone.json()["backends"]["subscription.audit"]["status"] != "ok"


def test_settings_sections_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLOUDRIFT_TOPIC__* / CLOUDRIFT_SUBSCRIPTION__* configure gcp_pubsub, typed."""
    monkeypatch.setenv("CLOUDRIFT_TOPIC__PROVIDER", "gcp_pubsub")
    monkeypatch.setenv("CLOUDRIFT_TOPIC__PROJECT", "cloudrift-test")
    monkeypatch.setenv("CLOUDRIFT_TOPIC__TOPIC", "events")
    monkeypatch.setenv("CLOUDRIFT_TOPIC__MAX_ATTEMPTS", "5")
    monkeypatch.setenv("CLOUDRIFT_SUBSCRIPTION__PROVIDER", "gcp_pubsub")
    monkeypatch.setenv("CLOUDRIFT_SUBSCRIPTION__PROJECT", "cloudrift-test")
    monkeypatch.setenv("CLOUDRIFT_SUBSCRIPTION__SUBSCRIPTION", "audit")
    settings = CloudriftSettings()
    topic = settings.backend("topic")
    assert topic.provider == "gcp_pubsub"
    assert topic.options == {"project": "cloudrift-test", "topic": "events", "max_attempts": 5}
    assert settings.backend("subscription").provider == "gcp_pubsub"


def test_worker_consumes_a_pubsub_subscription(pubsub: PubSubEndpoint, tmp_path: Path) -> None:
    """`cloudrift worker --subscription audit` on Pub/Sub handles and acks every event
    published to the topic, then SIGTERM exits 0."""
    import signal

    pubsub.create_topic("events")
    pubsub.create_subscription("audit", "events")
    config = tmp_path / "sub.yaml"
    config.write_text(_yaml(pubsub))
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    argv = [sys.executable, "-m", "cloudrift_fastapi.cli", "worker", "tests.cli.jobs:drain"]
    argv += ["--config", str(config), "--subscription", "audit"]
    worker = Child("worker", argv, tmp_path, env={"JOBS_DIR": str(jobs)})
    try:
        worker.wait_output("cloudrift worker started: subscription=audit (gcp_pubsub)")

        async def publish() -> None:
            async with _topic(pubsub, "events") as topic:
                await topic.publish_batch([{"id": i} for i in (1, 2, 3)])

        asyncio.run(publish())
        wait_for(
            lambda: {p.name for p in jobs.glob("done-*")} == {"done-1", "done-2", "done-3"},
            20,
            "3 events handled",
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.output()
    finally:
        worker.stop()
    assert "handled=3 (ok=3, failed=0)" in worker.output()
    assert pubsub.state.calls["acknowledge"] >= 1
    with pubsub.state.cond:
        assert pubsub.state.subscriptions[pubsub.subscription_path("audit")].deliveries == []
