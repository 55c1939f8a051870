"""Pub/Sub stand-in: the REST test server of ``_pubsub_server`` on a free loopback port.

``pubsub_server`` starts once per session (in a thread: it starts in well under a
millisecond); ``pubsub`` (function scope) drops every topic and subscription, clears the
counters and failure switches, and hands out the endpoint. Clients reach it the way they
reach Google's emulator: ``PUBSUB_EMULATOR_HOST=host:port`` for the raw
``gcloud-aio-pubsub`` clients, ``emulator_host=`` for cloudrift — never by patching.

``create_topic`` / ``create_subscription`` go through the REST API (PUT), so setup
exercises the same routes a client uses. ``state.calls`` counts requests per verb
(``publish``, ``pull``, ``acknowledge``, ``modifyAckDeadline``, ...);
``fail_next(verb, code, message, times=1)`` makes the next calls of a verb fail.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.servers._process import LOOPBACK
from tests.servers._pubsub_server import PubSubState, PubSubTestServer

PROJECT = "cloudrift-test"


@dataclass(frozen=True)
class PubSubEndpoint:
    """Where the stand-in listens, and helpers to set up topics and subscriptions."""

    server: PubSubTestServer
    started_in: float
    project: str = PROJECT

    @property
    def host(self) -> str:
        """``host:port``, the form ``PUBSUB_EMULATOR_HOST`` takes."""
        return f"{self.server.host}:{self.server.port}"

    @property
    def api_root(self) -> str:
        """The REST root the clients use in emulator mode."""
        return f"http://{self.host}/v1"

    @property
    def state(self) -> PubSubState:
        """The server's live state (topics, subscriptions, counters)."""
        return self.server.state

    def topic_path(self, topic: str) -> str:
        """``projects/<project>/topics/<topic>``."""
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        """``projects/<project>/subscriptions/<subscription>``."""
        return f"projects/{self.project}/subscriptions/{subscription}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST call; returns the JSON answer, raises HTTPError for an error answer."""
        req = urllib.request.Request(
            f"{self.api_root}/{path}",
            data=json.dumps(body or {}).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    def create_topic(self, topic: str) -> str:
        """Create ``topic``; return its full path."""
        path = self.topic_path(topic)
        self.request("PUT", path)
        return path

    def create_subscription(
        self,
        subscription: str,
        topic: str,
        *,
        ack_deadline: int = 10,
        ordering: bool = False,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 5,
    ) -> str:
        """Create a subscription on ``topic`` (both short names); return its full path."""
        body: dict[str, Any] = {
            "topic": self.topic_path(topic),
            "ackDeadlineSeconds": ack_deadline,
            "enableMessageOrdering": ordering,
        }
        if dead_letter_topic is not None:
            body["deadLetterPolicy"] = {
                "deadLetterTopic": self.topic_path(dead_letter_topic),
                "maxDeliveryAttempts": max_delivery_attempts,
            }
        path = self.subscription_path(subscription)
        self.request("PUT", path, body)
        return path

    def fail_next(self, verb: str, code: int, message: str, *, times: int = 1) -> None:
        """Make the next ``times`` ``verb`` requests (e.g. ``"publish"``) fail with ``code``."""
        with self.state.cond:
            self.state.failing[verb] = [code, message, times]


@pytest.fixture(scope="session")
def pubsub_server() -> Iterator[PubSubEndpoint]:
    """The Pub/Sub stand-in on a free 127.0.0.1 port for the whole session."""
    began = time.monotonic()
    server = PubSubTestServer(LOOPBACK)
    server.start()
    endpoint = PubSubEndpoint(server, time.monotonic() - began)
    try:
        endpoint.request("GET", endpoint.topic_path("readiness-probe"))
    except urllib.error.HTTPError as exc:  # 404 proves it answers
        if exc.code != 404:
            pytest.fail(f"Pub/Sub stand-in answered {exc.code} at startup", pytrace=False)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def pubsub(pubsub_server: PubSubEndpoint) -> PubSubEndpoint:
    """The session's Pub/Sub stand-in with no topics or subscriptions left."""
    pubsub_server.state.reset()
    return pubsub_server
