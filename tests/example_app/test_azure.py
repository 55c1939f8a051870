"""Azure, by configuration only: ``azure.yaml`` builds every production backend, and the
whole flow runs on ``local-azure.yaml``: Azurite (Blob), the Service Bus AMQP test broker
driven by the real azure-servicebus SDK, the ACS email stand-in and redis-server. The app
is built by exactly the same ``create_app`` as the demo; only the settings file differs.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from cloudrift.config import CloudriftSettings
from example_app import create_app, records
from example_app.config import SETTINGS_DIR, IntakeConfig
from tests.example_app.conftest import every_backend, flow_on_standins, running
from tests.servers.acs import ACSServer
from tests.servers.azurite import AzuriteContainer
from tests.servers.redis import RedisServer
from tests.servers.servicebus import PLAIN_QUEUE, ServiceBusEndpoint

#: The ACS stand-in accepts senders of its linked domain only.
AZURE_SENDER = "intake@example.com"
#: The topic local-azure.yaml publishes document.processed to (its audit subscription
#: is added with it).
EVENTS_TOPIC = "intake-events"


AZURE_ENV = {
    "AZURE_STORAGE_ACCOUNT": "intakeprod",
    "SERVICEBUS_NAMESPACE": "intake-prod",
    "COSMOS_CONNECTION_STRING": (
        "mongodb://intake:Zk2pQ9rLw8sT4vX1@intake.mongo.cosmos.azure.com:10255/"
        "?ssl=true&replicaSet=globaldb&retrywrites=false"
    ),
    "REDIS_HOST": "intake.redis.cache.windows.net",
    "REDIS_USERNAME": "11111111-2222-3333-4444-555555555555",
    "ACS_RESOURCE": "intake-mail",
    "INTAKE_MAIL_FROM": "DoNotReply@example.org",
}


async def test_azure_settings_build_every_backend_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """azure.yaml passes the production checks and every provider accepts its options
    (managed identity: no secret in the file but Cosmos's connection string)."""
    for name, value in AZURE_ENV.items():
        monkeypatch.setenv(name, value)
    settings = CloudriftSettings.from_yaml(SETTINGS_DIR / "azure.yaml")
    settings.validate_production_security()
    async with every_backend(settings) as (built, client):
        assert {c: b.provider for c, b in built.items()} == {
            "storage": "azure_blob",
            "queue": "azure_bus",
            "cache": "azure_redis",
            "email": "azure_acs",
            "topic": "azure_bus",
            "subscription": "azure_bus",
        }
        assert "Zk2pQ9rLw8sT4vX1" not in repr(settings)
        assert "Zk2pQ9rLw8sT4vX1" not in repr(client)


@pytest.fixture
def azure_standins(
    azurite: AzuriteContainer,
    servicebus: ServiceBusEndpoint,
    acs: ACSServer,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> CloudriftSettings:
    """local-azure.yaml pointed at Azurite, the Service Bus broker (with an events topic
    and its audit subscription), ACS and redis-server."""
    servicebus.broker.add_topic(EVENTS_TOPIC, ["audit"])
    for name, value in {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.server.connection_string,
        "INTAKE_CONTAINER": azurite.container,
        "SERVICEBUS_CONNECTION_STRING": servicebus.connection_string(),
        "INTAKE_QUEUE": PLAIN_QUEUE,
        "INTAKE_EVENTS_TOPIC": EVENTS_TOPIC,
        "ACS_ENDPOINT": acs.endpoint,
        "ACS_ACCESS_KEY": acs.access_key,
        "INTAKE_MAIL_FROM": AZURE_SENDER,
        "REDIS_URL": redis.url,
    }.items():
        monkeypatch.setenv(name, value)
    return CloudriftSettings.from_yaml(SETTINGS_DIR / "local-azure.yaml")


async def test_full_flow_on_azurite_service_bus_acs_and_redis_server(
    azure_standins: CloudriftSettings, acs: ACSServer, redis: RedisServer
) -> None:
    """Upload → Service Bus job → worker → record → redis cache hit → ACS mail → Azurite
    SAS GET, and the document.processed event through a Service Bus topic to its audit
    subscription: the Azure code paths, with the same app code as the demo."""
    content = b"azure one\nazure two"
    providers = {
        "storage.default": "azure_blob",
        "queue.default": "azure_bus",
        "document.default": "memory",
        "cache.default": "redis",
        "email.default": "azure_acs",
        "topic.default": "azure_bus",
        "subscription.audit": "azure_bus",
    }
    body = await flow_on_standins(azure_standins, providers, content)

    doc_id = body["id"]
    with redis.client() as direct:
        assert direct.exists(records.cache_key(doc_id)) == 1
    assert len(acs.sent) == 1
    mail = acs.sent[0]
    assert mail["senderAddress"] == AZURE_SENDER
    assert [a["name"] for a in mail["attachments"]] == [f"summary-{doc_id}.json"]
    summary = json.loads(base64.b64decode(mail["attachments"][0]["contentInBase64"]))
    assert summary["summary"]["sha256"] == body["summary"]["sha256"]


async def test_a_direct_upload_to_azurite_with_the_ticket_headers_is_accepted(
    azure_standins: CloudriftSettings,
) -> None:
    """upload-url on Azure: PUTting with exactly the ticket's headers works (Azure needs
    x-ms-blob-type), and a PUT after complete never reaches the document's file."""
    original = b"straight to azure\n"
    app = create_app(azure_standins, IntakeConfig())
    async with running(app) as client, httpx.AsyncClient() as azure:
        offer = await client.post("/documents/upload-url", json={"filename": "az.txt"})
        assert offer.status_code == 201, offer.text
        ticket = offer.json()
        put = await azure.put(ticket["upload_url"], content=original, headers=ticket["headers"])
        assert put.status_code == 201, put.text
        done = await client.post(ticket["complete_url"])
        assert done.status_code == 202, done.text
        late = await azure.put(ticket["upload_url"], content=b"swap", headers=ticket["headers"])
        assert late.status_code == 201
        storage = app.state.cloudrift.storage()
        stored = await storage.download(f"documents/{ticket['id']}")
    assert stored == original
