"""Topics and subscriptions in FastAPI: settings sections, dependencies, health, a
``queue_worker`` on a subscription, ``override_backends`` and the pytest plugin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloudrift.config import CloudriftSettings
from cloudrift.config._security import production_problems
from cloudrift.core.exceptions import ConfigurationError
from cloudrift.messaging import Message, Queue, Topic, get_subscription, get_topic
from cloudrift_fastapi import (
    SubscriptionDep,
    TopicDep,
    cloudrift_lifespan,
    health_router,
    memory_settings,
    override_backends,
    queue_worker,
    subscription_dep,
    topic_dep,
)


def _settings(**more: Any) -> CloudriftSettings:
    return memory_settings(
        topic={"provider": "memory", "topic": "orders"},
        subscription={
            "default": "audit",
            "backends": {
                "audit": {"provider": "memory", "topic": "orders", "subscription": "audit"},
                "search": {"provider": "memory", "topic": "orders", "subscription": "search"},
            },
        },
        **more,
    )


def test_a_route_publishes_and_two_subscription_workers_each_get_every_event() -> None:
    """TopicDep publishes; a queue_worker per subscription handles each event once."""
    seen: dict[str, list[int]] = {"audit": [], "search": []}
    both = asyncio.Event()

    def recorder(name: str) -> Any:
        async def handle(message: Message) -> None:
            seen[name].append(message.body["n"])
            if all(len(v) == 3 for v in seen.values()):
                both.set()

        return handle

    workers = [
        queue_worker(recorder("audit"), subscription="audit", wait_time=0.2),
        queue_worker(recorder("search"), subscription="search", wait_time=0.2),
    ]
    app = FastAPI(lifespan=cloudrift_lifespan(_settings(), workers=workers))

    @app.post("/orders/{n}")
    async def create(n: int, topic: TopicDep) -> str:
        return await topic.publish({"n": n}, attributes={"kind": "order.created"})

    @app.get("/audit-backend")
    async def audit(subscription: SubscriptionDep) -> str:
        return repr(subscription)

    with TestClient(app) as client:
        for n in range(3):
            assert client.post(f"/orders/{n}").status_code == 200
        client.portal.call(asyncio.wait_for, both.wait(), 10)  # type: ignore[union-attr]
        assert "subscription='audit'" in client.get("/audit-backend").json()
    assert sorted(seen["audit"]) == [0, 1, 2] and sorted(seen["search"]) == [0, 1, 2]


def test_named_dependencies_serve_the_named_subscription() -> None:
    """subscription_dep("search") and topic_dep("default") serve those backends."""
    app = FastAPI(lifespan=cloudrift_lifespan(_settings()))
    from fastapi import Depends

    @app.get("/which")
    async def which(
        sub: Queue = Depends(subscription_dep("search")),  # noqa: B008 - FastAPI's idiom
        topic: Topic = Depends(topic_dep("default")),  # noqa: B008 - FastAPI's idiom
    ) -> list[str]:
        return [repr(sub), repr(topic)]

    with TestClient(app) as client:
        sub, topic = client.get("/which").json()
    assert "subscription='search'" in sub and "topic='orders'" in topic


def test_health_reports_topics_and_subscriptions() -> None:
    """/health/ready has an entry per topic and per subscription."""
    app = FastAPI(lifespan=cloudrift_lifespan(_settings()))
    app.include_router(health_router())
    with TestClient(app) as client:
        body = client.get("/health/ready").json()
    assert body["backends"]["topic.default"] == {"provider": "memory", "status": "ok"}
    assert body["backends"]["subscription.audit"] == {"provider": "memory", "status": "ok"}
    assert body["backends"]["subscription.search"] == {"provider": "memory", "status": "ok"}


async def test_override_backends_swaps_in_a_memory_topic() -> None:
    """override_backends(topic=...) serves the given topic to routes."""
    app = FastAPI(lifespan=cloudrift_lifespan(_settings()))

    @app.post("/publish")
    async def publish(topic: TopicDep) -> str:
        return await topic.publish({"n": 1})

    async with (
        get_topic("memory", topic="swapped") as fake,
        get_subscription("memory", topic="swapped", subscription="probe") as probe,
    ):
        with override_backends(app, topic=fake), TestClient(app) as client:
            assert client.post("/publish").status_code == 200
        [msg] = await probe.receive()
        assert msg.body == {"n": 1}


def test_settings_sections_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLOUDRIFT_TOPIC__* / CLOUDRIFT_SUBSCRIPTION__* configure the sections, typed."""
    monkeypatch.setenv("CLOUDRIFT_TOPIC__PROVIDER", "redis")
    monkeypatch.setenv("CLOUDRIFT_TOPIC__STREAM", "events")
    monkeypatch.setenv("CLOUDRIFT_TOPIC__MAX_LEN", "1000")
    monkeypatch.setenv("CLOUDRIFT_SUBSCRIPTION__PROVIDER", "sqs")
    monkeypatch.setenv(
        "CLOUDRIFT_SUBSCRIPTION__QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/audit"
    )
    settings = CloudriftSettings()
    topic = settings.backend("topic")
    assert topic.provider == "redis" and topic.options == {"stream": "events", "max_len": 1000}
    assert settings.backend("subscription").provider == "sqs"


def test_unknown_topic_option_is_refused_naming_the_close_one() -> None:
    """A misspelled topic option is a ConfigurationError suggesting the right one."""
    settings = CloudriftSettings(topic={"provider": "redis", "stream": "e", "maxlen": 5})
    with pytest.raises(ConfigurationError, match="'maxlen' \\(did you mean 'max_len'\\?\\)"):
        settings.open_backend("topic")


def test_memory_topics_are_refused_in_production() -> None:
    """A memory topic or subscription is a production problem, as other memory backends."""
    problems = production_problems(_settings())
    assert any(p.startswith("topic.backends.default.provider") for p in problems)
    assert any(p.startswith("subscription.backends.audit.provider") for p in problems)


def test_queue_worker_takes_a_queue_or_a_subscription_not_both() -> None:
    """queue_worker(queue=..., subscription=...) is refused."""
    with pytest.raises(ConfigurationError, match="pass only one"):
        queue_worker(lambda m: None, queue="jobs", subscription="audit")  # type: ignore[arg-type,return-value]


def test_memory_backends_fixture_includes_topics(cloudrift_memory_backends: dict[str, Any]) -> None:
    """The pytest plugin's memory backends include a topic and its subscription."""
    assert isinstance(cloudrift_memory_backends["topic"], Topic)
    assert isinstance(cloudrift_memory_backends["subscription"], Queue)


async def test_memory_twin_keeps_named_subscriptions_apart() -> None:
    """On the memory twin each named subscription is its own subscription of the topic,
    so both get every event (they do not compete for one)."""
    from cloudrift_fastapi.testing import memory_twin

    configured = CloudriftSettings(
        topic={"provider": "sns", "topic_arn": "arn:aws:sns:us-east-1:000000000000:orders"},
        subscription={
            "default": "audit",
            "backends": {
                "audit": {"provider": "sqs", "queue_url": "http://sqs.local/000000000000/a"},
                "search": {"provider": "sqs", "queue_url": "http://sqs.local/000000000000/s"},
            },
        },
    )
    twin = memory_twin(configured)
    subs = twin.section("subscription")
    assert subs is not None
    options = {name: cfg.factory_options() for name, cfg in subs.backends.items()}
    assert options["audit"]["subscription"] == "audit"
    assert options["search"]["subscription"] == "search"
    assert {cfg.provider for cfg in subs.backends.values()} == {"memory"}
    audit = get_subscription("memory", **options["audit"])
    search = get_subscription("memory", **options["search"])
    topics = twin.section("topic")
    assert topics is not None
    topic = get_topic("memory", **topics.backends["default"].factory_options())
    async with topic, audit, search:
        await topic.publish({"n": 1})
        [a] = await audit.receive(wait_time=1)
        [s] = await search.receive(wait_time=1)
        assert a.body == s.body == {"n": 1}
