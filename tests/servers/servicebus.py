"""Service Bus stand-in: the AMQP 1.0 test broker (``_amqp_broker``) on a free loopback port.

``servicebus_broker`` starts once per test module with the queues below (a fresh broker
per module: state left behind by one module's apps — e.g. the FastAPI and example-app
tests — once made a later module's raw-SDK schedule test miss its message, a test-broker
leak not yet explained, so modules never share a broker); ``servicebus``
(function scope) empties them before each test and fails the test if the broker thread
crashed while it ran. The real ``azure-servicebus`` SDK reaches it with the emulator
connection string (plain AMQP, no TLS): ``connection_string(...)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers._amqp_broker import AmqpTestBroker
from tests.servers._process import LOOPBACK, free_port

KEY_NAME = "k"
KEY = "v"
#: A peek-lock queue with duplicate detection, and a lock no test sees expire by itself.
QUEUE = "jobs"
#: A queue created without duplicate detection.
PLAIN_QUEUE = "plain"
#: A queue whose locks expire after 1 s (redelivery after an unacked receive).
SHORT_LOCK_QUEUE = "short-lock"
#: A session-enabled queue with duplicate detection (seed: "created with sessions enabled").
SESSION_QUEUE = "sessions"
#: A session-enabled queue whose session locks expire after 1 s.
SHORT_SESSION_QUEUE = "short-sessions"
SHORT_LOCK_SECONDS = 1.0
#: How long a closing client may take to detach its receiver links.
DETACH_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class ServiceBusEndpoint:
    """Where the test broker listens and how to reach it."""

    broker: AmqpTestBroker
    port: int

    def connection_string(self, *, key: str = KEY, key_name: str = KEY_NAME) -> str:
        """The emulator-style connection string the SDK accepts for plain AMQP."""
        return (
            f"Endpoint=sb://{LOOPBACK}:{self.port};SharedAccessKeyName={key_name};"
            f"SharedAccessKey={key};UseDevelopmentEmulator=true"
        )

    async def wait_until_detached(self) -> None:
        """Wait until no receiver link is attached (every client's detach has arrived)."""
        deadline = time.monotonic() + DETACH_WAIT_SECONDS
        while self.broker.delivering_links():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.broker.delivering_links()} receiver links still attached after "
                    f"{DETACH_WAIT_SECONDS} s",
                    pytrace=False,
                )
            await asyncio.sleep(0.005)

    @property
    def started_in(self) -> float:
        """Seconds the broker took to start listening."""
        return self.broker.started_in or 0.0


@pytest.fixture(scope="module")
def servicebus_broker() -> Iterator[ServiceBusEndpoint]:
    """The AMQP test broker on a free 127.0.0.1 port for one test module."""
    port = free_port()
    broker = AmqpTestBroker(host=LOOPBACK, port=port, key_name=KEY_NAME, key=KEY)
    broker.add_queue(QUEUE, duplicate_detection=True)
    broker.add_queue(PLAIN_QUEUE)
    broker.add_queue(SHORT_LOCK_QUEUE, lock_duration=SHORT_LOCK_SECONDS)
    broker.add_queue(SESSION_QUEUE, requires_session=True, duplicate_detection=True)
    broker.add_queue(SHORT_SESSION_QUEUE, requires_session=True, lock_duration=SHORT_LOCK_SECONDS)
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"AMQP test broker could not start: {exc}", pytrace=False)
    try:
        yield ServiceBusEndpoint(broker, port)
    finally:
        broker.stop()


@pytest.fixture
def servicebus(servicebus_broker: ServiceBusEndpoint) -> Iterator[ServiceBusEndpoint]:
    """The session's test broker with every queue emptied for this test."""
    servicebus_broker.broker.check()
    servicebus_broker.broker.reset()
    yield servicebus_broker
    servicebus_broker.broker.check()
