"""Pub/Sub passes the messaging conformance suite on the REST stand-in, and each row of
the Pub/Sub column of the semantics table (docs/messaging.md) has a test here."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcloud.aio.pubsub import PubsubMessage

from cloudrift.core.exceptions import (
    ConfigurationError,
    FeatureNotSupportedError,
    InvalidMessageError,
    MessageSendError,
    MessageTooLargeError,
    MessagingConnectionError,
    MessagingPermissionError,
    QueueNotFoundError,
    ReceiptHandleError,
)
from cloudrift.messaging import DEAD_LETTER_REASON, Message, OutgoingMessage, Queue, get_queue
from cloudrift.messaging.base import PreparedMessage
from cloudrift.messaging.gcp_pubsub import GcpPubSubQueue
from tests.conformance.messaging import MessagingConformance, drain
from tests.servers._process import free_port
from tests.servers.pubsub import PubSubEndpoint


def make_queue(pubsub: PubSubEndpoint, **options: Any) -> Queue:
    """A gcp_pubsub queue on the stand-in: topic ``jobs``, subscription ``jobs-sub``."""
    base: dict[str, Any] = {
        "project": pubsub.project,
        "topic": "jobs",
        "subscription": "jobs-sub",
        "emulator_host": pubsub.host,
    }
    return get_queue("gcp_pubsub", **(base | options))


def publish_foreign(pubsub: PubSubEndpoint, topic: str, raw: bytes, **extra: Any) -> None:
    """Publish ``raw`` over the REST API the way a non-cloudrift producer would."""
    message = {"data": base64.b64encode(raw).decode(), **extra}
    pubsub.request("POST", f"{pubsub.topic_path(topic)}:publish", {"messages": [message]})


class TestGcpPubSub(MessagingConformance):
    """An ordering-enabled subscription with a dead-letter policy and topic: groups and
    dead letters work; no per-message delay, no dedup, no receive(group_id=)."""

    unsupported = frozenset({"delay", "dedup", "group_receive"})
    # Seen once on a machine at load 9: a pull the client gave up on was handed the
    # message (delivery 2), which came back after its 30 s ack deadline as delivery 3.
    abandoned_pull_may_take_a_delivery = True

    @pytest.fixture
    async def backend(self, pubsub: PubSubEndpoint) -> AsyncIterator[Queue]:
        pubsub.create_topic("jobs")
        pubsub.create_topic("jobs-dlq")
        pubsub.create_subscription("jobs-dlq-sub", "jobs-dlq")
        pubsub.create_subscription(
            "jobs-sub", "jobs", ack_deadline=30, ordering=True, dead_letter_topic="jobs-dlq"
        )
        self._pubsub = pubsub
        queue = make_queue(pubsub, dead_letter_topic="jobs-dlq")
        try:
            yield queue
        finally:
            await queue.close()

    async def send_foreign(self, backend: Queue, raw: bytes) -> None:
        publish_foreign(self._pubsub, "jobs", raw)

    async def read_dead_letters(self, backend: Queue, count: int) -> list[Message]:
        async with make_queue(self._pubsub, topic="jobs-dlq", subscription="jobs-dlq-sub") as dlq:
            return await drain(dlq, count)

    async def test_oversized_message_names_the_limit(self, backend: Queue) -> None:
        """Over Pub/Sub's 10 MB (counted as the base64 the REST API carries) raises, unsent."""
        big = {"blob": "x" * 7_600_000}  # ~10.1 MB once base64-encoded
        with pytest.raises(MessageTooLargeError) as info:
            await backend.send(big)
        assert str(info.value.limit) in str(info.value)
        with pytest.raises(MessageTooLargeError, match="batch entry 1"):
            await backend.send_batch([{"small": 1}, big])
        assert await backend.receive(max_messages=10, wait_time=0) == []


# ------------------------------------------------------------------ the table's rows


@pytest.fixture
def topics(pubsub: PubSubEndpoint) -> PubSubEndpoint:
    """Topic ``jobs`` with a plain subscription ``jobs-sub``, and ``dlq`` / ``dlq-sub``."""
    pubsub.state.max_pull_wait = 1.0
    pubsub.create_topic("jobs")
    pubsub.create_topic("dlq")
    pubsub.create_subscription("dlq-sub", "dlq")
    pubsub.create_subscription("jobs-sub", "jobs", ack_deadline=30)
    return pubsub


@pytest.fixture
async def plain(topics: PubSubEndpoint) -> AsyncIterator[GcpPubSubQueue]:
    """A queue on a subscription without ordering or dead-letter policy, DLQ topic ``dlq``."""
    queue = make_queue(topics, dead_letter_topic="dlq")
    assert isinstance(queue, GcpPubSubQueue)
    try:
        yield queue
    finally:
        await queue.close()


async def test_group_id_without_message_ordering_is_not_supported(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """group_id needs an ordering-enabled subscription; otherwise it raises, nothing sent."""
    with pytest.raises(FeatureNotSupportedError, match="group_id"):
        await plain.send({"n": 1}, group_id="owner-1")
    assert topics.state.calls["publish"] == 0


async def test_group_id_travels_as_the_ordering_key(pubsub: PubSubEndpoint) -> None:
    """group_id is published as orderingKey and comes back as Message.group_id."""
    pubsub.create_topic("jobs")
    pubsub.create_subscription("jobs-sub", "jobs", ordering=True)
    async with make_queue(pubsub) as queue:
        await queue.send({"n": 1}, group_id="owner-1")
        publish_foreign(pubsub, "jobs", b'{"n": 2}', orderingKey="owner-2")
        got = await drain(queue, 2)
    assert {m.body["n"]: m.group_id for m in got} == {1: "owner-1", 2: "owner-2"}


async def test_a_publisher_that_cannot_read_the_subscription_still_sends(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """403 on reading the subscription (a publisher-only role) does not stop sends: the
    topic check is skipped and ordering keys pass through as given."""
    topics.fail_next("getSubscription", 403, "User not authorized to perform this action.")
    await plain.send({"n": 1}, group_id="owner-1")
    assert topics.state.calls["publish"] == 1
    [msg] = await plain.receive(wait_time=1)
    assert msg.group_id == "owner-1"


async def test_dedup_id_is_not_supported(plain: GcpPubSubQueue) -> None:
    """Pub/Sub has no deduplication id: dedup_id raises FeatureNotSupportedError, unsent."""
    with pytest.raises(FeatureNotSupportedError, match="dedup_id"):
        await plain.send_batch([OutgoingMessage({"n": 1}, dedup_id="evt-1")])
    assert await plain.receive(max_messages=10, wait_time=0) == []


async def test_visibility_timeout_sets_the_ack_deadline(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """receive(visibility_timeout=) and extend_visibility call modifyAckDeadline; >600 s
    (Pub/Sub's longest deadline) is a ValueError before any request."""
    await plain.send({"n": 1})
    [msg] = await plain.receive(wait_time=1, visibility_timeout=45)
    assert topics.state.calls["modifyAckDeadline"] == 1
    await plain.extend_visibility(msg.receipt_handle, 120)
    assert topics.state.calls["modifyAckDeadline"] == 2
    with topics.state.cond:
        [delivery] = topics.state.subscriptions[plain.subscription_path].deliveries
        assert 110 < delivery.lease_until - time.monotonic() <= 120
    pulls = topics.state.calls["pull"]
    with pytest.raises(ValueError, match="600"):
        await plain.receive(visibility_timeout=601)
    with pytest.raises(ValueError, match="600"):
        await plain.extend_visibility(msg.receipt_handle, 601)
    assert topics.state.calls["pull"] == pulls


async def test_nack_sets_the_ack_deadline_to_zero(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """nack() is modifyAckDeadline(0): the message is deliverable again at once."""
    await plain.send({"n": 1})
    [msg] = await plain.receive(wait_time=1)
    await plain.nack(msg.receipt_handle)
    assert topics.state.calls["modifyAckDeadline"] == 1
    [again] = await plain.receive(wait_time=0)
    assert again.message_id == msg.message_id


async def test_receive_count_without_dead_letter_policy_is_counted_by_this_instance(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """Without a dead-letter policy Pub/Sub sends no deliveryAttempt: the backend counts
    the deliveries it saw itself; another instance starts again at 1."""
    await plain.send({"n": 1})
    [first] = await plain.receive(wait_time=1)
    await plain.nack(first.receipt_handle)
    [second] = await plain.receive(wait_time=1)
    assert (first.receive_count, second.receive_count) == (1, 2)
    await plain.nack(second.receipt_handle)
    async with make_queue(topics) as other:
        [third] = await other.receive(wait_time=1)
    assert third.receive_count == 1


async def test_receive_count_is_the_delivery_attempt_under_a_dead_letter_policy(
    pubsub: PubSubEndpoint,
) -> None:
    """With a dead-letter policy receive_count is Pub/Sub's deliveryAttempt, across instances."""
    pubsub.create_topic("jobs")
    pubsub.create_topic("dlq")
    pubsub.create_subscription("jobs-sub", "jobs", dead_letter_topic="dlq")
    async with make_queue(pubsub) as first_queue:
        await first_queue.send({"n": 1})
        [first] = await first_queue.receive(wait_time=1)
        await first_queue.nack(first.receipt_handle)
    async with make_queue(pubsub) as second_queue:
        [second] = await second_queue.receive(wait_time=1)
    assert (first.receive_count, second.receive_count) == (1, 2)


async def test_dead_letter_publishes_to_the_topic_then_acks(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """dead_letter() publishes body, attributes, reason to the dead-letter topic, then acks."""
    await plain.send({"n": 1}, attributes={"trace": "t"})
    [msg] = await plain.receive(wait_time=1, visibility_timeout=0)
    await plain.dead_letter(msg.receipt_handle, "bad input")
    assert topics.state.calls["publish"] == 2 and topics.state.calls["acknowledge"] == 1
    async with make_queue(topics, topic="dlq", subscription="dlq-sub") as dlq:
        [dead] = await dlq.receive(wait_time=1)
    assert dead.body == {"n": 1} and dead.attributes["trace"] == "t"
    assert dead.attributes[DEAD_LETTER_REASON] == "bad input"
    assert await plain.receive(max_messages=10, wait_time=0) == []


async def test_dead_letter_publish_failure_leaves_the_message(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """When publishing to the dead-letter topic fails, nothing is acked: the message stays."""
    await plain.send({"n": 1})
    [msg] = await plain.receive(wait_time=1, visibility_timeout=0)
    # Unavailable through every retry.
    topics.fail_next("publish", 503, "The service was unable to fulfill your request.", times=3)
    with pytest.raises(MessageSendError, match="stays on the subscription"):
        await plain.dead_letter(msg.receipt_handle, "bad")
    assert topics.state.calls["acknowledge"] == 0
    [again] = await plain.receive(wait_time=1)
    assert again.message_id == msg.message_id


async def test_dead_letter_without_a_topic_is_not_supported(topics: PubSubEndpoint) -> None:
    """Without dead_letter_topic, dead_letter() and consume(max_receives=) raise."""
    async with make_queue(topics) as queue:
        await queue.send({"n": 1})
        [msg] = await queue.receive(wait_time=1)
        with pytest.raises(FeatureNotSupportedError, match="dead-letter"):
            await queue.dead_letter(msg.receipt_handle, "bad")


async def test_batches_split_at_1000_messages_per_publish(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """send_batch of 2,500 small messages takes 3 publish requests, ids in input order."""
    ids = await plain.send_batch([{"n": i} for i in range(2500)])
    assert topics.state.calls["publish"] == 3 and len(set(ids)) == 2500
    with topics.state.cond:
        stored = topics.state.subscriptions[plain.subscription_path].deliveries
        by_id = {d.message.message_id: d.message.data for d in stored}
    assert base64.b64decode(by_id[ids[1234]]) == b'{"n":1234}'


async def test_batches_split_at_10_mb_per_publish(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """Entries of ~5.3 MB base64 each go one per publish request (two would pass 10 MB)."""
    ids = await plain.send_batch([{"blob": "x" * 4_000_000} for _ in range(3)])
    assert topics.state.calls["publish"] == 3 and len(ids) == 3


@pytest.mark.parametrize(
    ("body", "attributes", "group"),
    [
        (b"", {}, None),
        (b'{"n":1}', {"a": "b"}, "owner-1"),
        (bytes(range(256)) * 3, {"x": 'ü\n"', "data": "d"}, "ключ"),
        (b"12345", {}, "g"),
    ],
)
def test_entry_size_is_the_exact_json_a_publish_request_carries(
    body: bytes, attributes: dict[str, str], group: str | None
) -> None:
    """The size counted against the 10 MB limit is exactly what gcloud-aio serialises."""
    queue = GcpPubSubQueue(
        project="cloudrift-test", topic="jobs", subscription="jobs-sub", emulator_host="h:1"
    )
    msg = PreparedMessage(index=0, body=body, attributes=attributes, group_id=group)
    wire = PubsubMessage(body, ordering_key=group or "")
    wire.attributes = attributes
    assert queue._entry_size(msg) == len(json.dumps(wire.to_repr())) + len(", ")


async def test_attributes_and_binary_payloads_round_trip(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """Attributes (even one named "data") travel as Pub/Sub attributes; non-UTF-8 bytes
    from a foreign producer arrive exactly (base64 on the wire)."""
    await plain.send({"n": 1}, attributes={"data": "d", "ordering_key": "k"})
    publish_foreign(topics, "jobs", b"\xff\x00raw", attributes={"from": "legacy"})
    got = await drain(plain, 2)
    json_msg = next(m for m in got if m.is_json)
    raw_msg = next(m for m in got if not m.is_json)
    assert json_msg.attributes == {"data": "d", "ordering_key": "k"}
    assert raw_msg.raw == b"\xff\x00raw" and raw_msg.attributes == {"from": "legacy"}


# ------------------------------------------------------------------------- errors


async def test_missing_topic_or_subscription_is_queue_not_found(pubsub: PubSubEndpoint) -> None:
    """A subscription or topic that does not exist raises QueueNotFoundError naming it."""
    async with make_queue(pubsub) as queue:
        with pytest.raises(QueueNotFoundError, match="jobs-sub"):
            await queue.send({"n": 1})
        with pytest.raises(QueueNotFoundError):
            await queue.receive()
        assert await queue.health_check() is False


async def test_subscription_on_another_topic_is_a_configuration_error(
    topics: PubSubEndpoint,
) -> None:
    """A subscription attached to a different topic is refused before anything is sent."""
    async with make_queue(topics, topic="dlq") as queue:
        with pytest.raises(ConfigurationError, match="attached to"):
            await queue.send({"n": 1})
    assert topics.state.calls["publish"] == 0


async def test_server_errors_are_translated(plain: GcpPubSubQueue, topics: PubSubEndpoint) -> None:
    """403 → MessagingPermissionError, 503 → MessagingConnectionError, 400 on publish →
    InvalidMessageError, invalid ack id → ReceiptHandleError; each chained."""
    await plain.send({"n": 0})
    topics.fail_next("publish", 403, "User not authorized to perform this action.")
    with pytest.raises(MessagingPermissionError, match="roles/pubsub") as denied:
        await plain.send({"n": 1})
    assert denied.value.__cause__ is not None
    topics.fail_next("pull", 503, "The service was unable to fulfill your request.")
    with pytest.raises(MessagingConnectionError):
        await plain.receive()
    topics.fail_next("publish", 400, "Invalid value at 'messages'.")
    with pytest.raises(InvalidMessageError):
        await plain.send({"n": 1})
    with pytest.raises(ReceiptHandleError):
        await plain.extend_visibility("garbage", 10)


async def test_transient_failures_are_retried_with_backoff(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """503 / 429 answers are retried (max_attempts=3 by default): the call then succeeds."""
    await plain.send({"n": 0})  # reads the subscription once
    topics.fail_next("publish", 503, "The service was unable to fulfill your request.", times=2)
    await plain.send({"n": 1})
    assert topics.state.calls["publish"] == 4
    msg = (await drain(plain, 2))[0]
    topics.fail_next("acknowledge", 429, "Too many requests.")
    await plain.delete(msg.receipt_handle)
    assert topics.state.calls["acknowledge"] == 2


async def test_max_attempts_one_does_not_retry(topics: PubSubEndpoint) -> None:
    """With max_attempts=1 a 503 surfaces at once as MessagingConnectionError."""
    async with make_queue(topics, max_attempts=1) as queue:
        await queue.send({"n": 0})
        topics.fail_next("publish", 503, "The service was unable to fulfill your request.")
        with pytest.raises(MessagingConnectionError, match="503"):
            await queue.send({"n": 1})
    assert topics.state.calls["publish"] == 2


async def test_unreachable_service_is_a_connection_error() -> None:
    """Nothing listening on emulator_host: MessagingConnectionError; health is False."""
    queue = get_queue(
        "gcp_pubsub",
        project="cloudrift-test",
        topic="jobs",
        subscription="jobs-sub",
        emulator_host=f"127.0.0.1:{free_port()}",
    )
    async with queue:
        with pytest.raises(MessagingConnectionError, match="cannot reach"):
            await queue.receive()
        assert await queue.health_check() is False


# ------------------------------------------------------------------ configuration


def test_options_are_checked_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad names, paths for names, conflicting credentials and typos raise ConfigurationError."""
    base = {"project": "cloudrift-test", "topic": "jobs", "subscription": "jobs-sub"}
    with pytest.raises(ConfigurationError, match="short topic name"):
        get_queue("gcp_pubsub", **(base | {"topic": "projects/p/topics/jobs"}))
    with pytest.raises(ConfigurationError, match="project"):
        get_queue("gcp_pubsub", **(base | {"project": "Bad Project"}))
    with pytest.raises(ConfigurationError, match="credentials_path"):
        get_queue("gcp_pubsub", **base, credentials_path="/k.json", emulator_host="h:1")
    with pytest.raises(ConfigurationError, match="empty string"):
        get_queue("gcp_pubsub", **base, emulator_host="")
    with pytest.raises(ConfigurationError, match="emulator_host"):
        get_queue("gcp_pubsub", **base, emulater_host="h:1")


async def test_pubsub_emulator_host_env_var_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A stray PUBSUB_EMULATOR_HOST cannot redirect a production queue to an emulator."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file either
    queue = get_queue("gcp_pubsub", project="cloudrift-test", topic="jobs", subscription="s-1")
    async with queue:
        clients = await queue.native()
        assert clients.subscriber._api_root == "https://pubsub.googleapis.com/v1"
        assert clients.publisher._api_is_dev is False


async def test_unreadable_credentials_file_is_a_configuration_error(tmp_path: Any) -> None:
    """A credentials_path that cannot be read raises ConfigurationError naming the option."""
    queue = get_queue(
        "gcp_pubsub",
        project="cloudrift-test",
        topic="jobs",
        subscription="jobs-sub",
        credentials_path=str(tmp_path / "missing.json"),
    )
    async with queue:
        with pytest.raises(ConfigurationError, match="credentials_path"):
            await queue.send({"n": 1})


def service_account_file(folder: Path, pubsub: PubSubEndpoint) -> tuple[Path, str]:
    """A service-account key file whose token_uri is the stand-in; returns (path, PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    pubsub.state.token_public_key = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = folder / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": pubsub.project,
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "worker@cloudrift-test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"http://{pubsub.host}/token",
            }
        )
    )
    return path, pem


async def test_service_account_key_file_mints_and_sends_a_bearer_token(
    topics: PubSubEndpoint, tmp_path: Path
) -> None:
    """credentials_path: a JWT signed with the key buys an access token (once, shared by
    publisher and subscriber) that every call carries; endpoint_url picks the API root."""
    path, _ = service_account_file(tmp_path, topics)
    topics.state.access_token = "ya29.cloudrift-test-token"
    queue = get_queue(
        "gcp_pubsub",
        project=topics.project,
        topic="jobs",
        subscription="jobs-sub",
        credentials_path=str(path),
        endpoint_url=f"http://{topics.host}",
    )
    async with queue:
        await queue.send({"n": 1})
        [msg] = await queue.receive(wait_time=1)
        await queue.delete(msg.receipt_handle)
    assert msg.body == {"n": 1}
    assert topics.state.calls["token"] == 1 and topics.state.calls["unauthenticated"] == 0


async def test_rejected_credentials_are_a_permission_error_without_the_key(
    topics: PubSubEndpoint, tmp_path: Path
) -> None:
    """A token the API refuses (401) raises MessagingPermissionError; neither the private
    key nor the token appears in the error."""
    path, pem = service_account_file(tmp_path, topics)
    topics.state.access_token = "ya29.cloudrift-test-token"
    queue = get_queue(
        "gcp_pubsub",
        project=topics.project,
        topic="jobs",
        subscription="jobs-sub",
        credentials_path=str(path),
        endpoint_url=f"http://{topics.host}",
    )
    async with queue:
        await queue.send({"n": 1})  # token minted and accepted
        topics.state.access_token = "ya29.rotated"  # the server no longer accepts ours
        with pytest.raises(MessagingPermissionError, match="401") as denied:
            await queue.send({"n": 2})
    text = str(denied.value)
    assert "cloudrift-test-token" not in text
    assert pem.splitlines()[1] not in text and "PRIVATE KEY" not in text


_ADC_PROBE = """
import asyncio, sys
from cloudrift.messaging import get_queue

async def main():
    queue = get_queue("gcp_pubsub", project=sys.argv[1], topic="jobs",
                      subscription="jobs-sub", endpoint_url=sys.argv[2])
    async with queue:
        assert queue.auth_method == "application default credentials", queue.auth_method
        await queue.send({"n": 1})
        [msg] = await queue.receive(wait_time=2)
        await queue.delete(msg.receipt_handle)
    print("ADC OK", msg.body)

asyncio.run(main())
"""


def test_application_default_credentials_use_the_metadata_server(
    topics: PubSubEndpoint, tmp_path: Path
) -> None:
    """With no credential option and no key file, the token comes from the metadata server
    (GCE / GKE workload identity). A child process: gcloud-aio reads GCE_METADATA_HOST
    when it is imported."""
    topics.state.access_token = "ya29.from-the-metadata-server"
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env |= {"GCE_METADATA_HOST": topics.host, "CLOUDSDK_CONFIG": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _ADC_PROBE, topics.project, f"http://{topics.host}"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ADC OK {'n': 1}" in done.stdout
    assert topics.state.calls["metadataToken"] == 1
    assert topics.state.calls["unauthenticated"] == 0


def test_endpoint_url_must_be_https_off_loopback() -> None:
    """endpoint_url refuses plain http to a remote host and conflicts with emulator_host."""
    base = {"project": "cloudrift-test", "topic": "jobs", "subscription": "jobs-sub"}
    with pytest.raises(ConfigurationError, match="https"):
        get_queue("gcp_pubsub", **base, endpoint_url="http://pubsub.example.com")
    with pytest.raises(ConfigurationError, match="not both"):
        get_queue("gcp_pubsub", **base, endpoint_url="https://x.example", emulator_host="h:1")
    queue = get_queue("gcp_pubsub", **base, endpoint_url="https://us-east1-pubsub.googleapis.com/")
    assert isinstance(queue, GcpPubSubQueue)


def test_repr_names_the_resources_and_no_credentials() -> None:
    """repr shows project, topic, subscription and the auth method — never a key file path."""
    queue = get_queue(
        "gcp_pubsub",
        project="cloudrift-test",
        topic="jobs",
        subscription="jobs-sub",
        credentials_path="/secret/place/key.json",
    )
    text = repr(queue)
    assert "jobs-sub" in text and "service account file" in text
    assert "/secret/place" not in text


async def test_dead_lettered_copy_keeps_the_trace_context(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """The producer's traceparent / tracestate survive dead_letter(): the copy on the
    dead-letter topic carries them as transport headers, not as attributes."""
    from tests.telemetry.support import recording

    with recording() as recorder:
        with recorder.tracer.start_as_current_span("producer"):
            await plain.send({"n": 1}, attributes={"trace": "t"})
        [msg] = await plain.receive(wait_time=1)
        assert msg.transport_headers.get("traceparent")  # the producer's context arrived
        await plain.dead_letter(msg.receipt_handle, "bad input")
        async with make_queue(topics, topic="dlq", subscription="dlq-sub") as dlq:
            [dead] = await dlq.receive(wait_time=1)
    assert dead.transport_headers == msg.transport_headers
    assert "traceparent" not in dead.attributes
    assert dead.attributes == {"trace": "t", DEAD_LETTER_REASON: "bad input"}


async def test_concurrent_first_sends_read_the_subscription_once(
    plain: GcpPubSubQueue, topics: PubSubEndpoint
) -> None:
    """Ten sends racing as the queue's first ones read the subscription once, not ten times."""
    await asyncio.gather(*(plain.send({"n": n}) for n in range(10)))
    assert topics.state.calls["getSubscription"] == 1
    assert topics.state.calls["publish"] == 10
