"""Google Cloud, by configuration only: ``gcp.yaml`` builds every production backend, and
the whole flow runs on ``local-gcp.yaml``: the GCS emulator, the Pub/Sub REST stand-in,
redis-server and an SMTP server with STARTTLS + AUTH (the relay's path). The app is built
by exactly the same ``create_app`` as the demo; only the settings file differs.
"""

from __future__ import annotations

import email
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cloudrift.config import CloudriftSettings
from example_app import create_app, records
from example_app.config import SETTINGS_DIR, IntakeConfig
from tests.example_app.conftest import every_backend, flow_on_standins
from tests.servers.gcs import GCSEmulator
from tests.servers.pubsub import PubSubEndpoint
from tests.servers.redis import RedisServer
from tests.servers.smtp import SMTPServer
from tests.servers.tls import TLSFiles

SENDER = "intake@example.test"

GCP_ENV = {
    "INTAKE_BUCKET": "intake-prod",
    "INTAKE_SIGNER_EMAIL": "intake@intake-prod.iam.gserviceaccount.com",
    "GOOGLE_CLOUD_PROJECT": "intake-prod",
    "FIRESTORE_HOST": "0123abcd.europe-west1.firestore.goog",
    "FIRESTORE_DATABASE_ID": "intake",
    "MEMORYSTORE_HOST": "10.0.0.3",
    "SMTP_RELAY_USERNAME": "relay@example.org",
    "SMTP_RELAY_PASSWORD": "Wq7!relay#Pass9",
    "INTAKE_MAIL_FROM": "intake@example.org",
}


async def test_gcp_settings_build_every_backend_without_network(
    monkeypatch: pytest.MonkeyPatch, tls_files: TLSFiles, tmp_path: Path
) -> None:
    """gcp.yaml passes the production checks and every provider accepts its options
    (application default credentials everywhere; only the relay's password is a secret,
    and it comes from the environment)."""
    for name, value in GCP_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEMORYSTORE_CA_FILE", str(tls_files.ca_cert))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file either
    settings = CloudriftSettings.from_yaml(SETTINGS_DIR / "gcp.yaml")
    settings.validate_production_security()
    async with every_backend(settings) as (built, _):
        assert {c: b.provider for c, b in built.items()} == {
            "storage": "gcs",
            "queue": "gcp_pubsub",
            "cache": "memorystore",
            "email": "smtp",
            "topic": "gcp_pubsub",
            "subscription": "gcp_pubsub",
        }
        assert settings.backend("document").provider == "firestore"
        assert GCP_ENV["SMTP_RELAY_PASSWORD"] not in repr(settings)
        assert GCP_ENV["SMTP_RELAY_PASSWORD"] not in repr(built["email"])
        app = create_app(settings, IntakeConfig())
        assert app.title == "cloudrift document intake"


def _signing_key(folder: Path) -> Path:
    """A throwaway service-account key: signs download URLs, never reaches Google."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = folder / "signing-key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "intake-local",
                "private_key_id": "local",
                "private_key": pem,
                "client_email": "intake@intake-local.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    return path


@pytest.fixture
def gcp_standins(
    gcs: GCSEmulator,
    pubsub: PubSubEndpoint,
    redis: RedisServer,
    smtp_servers: dict[str, SMTPServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> CloudriftSettings:
    """local-gcp.yaml pointed at the GCS emulator, the Pub/Sub stand-in, redis-server and
    the STARTTLS SMTP server (topic and subscription created)."""
    pubsub.create_topic("intake-jobs")
    pubsub.create_subscription("intake-jobs-worker", "intake-jobs", ack_deadline=60)
    pubsub.create_topic("intake-events")
    pubsub.create_subscription("intake-events-audit", "intake-events")
    smtp = smtp_servers["starttls"]
    smtp.handler.reset()
    assert smtp.username and smtp.password and smtp.ca_file
    for name, value in {
        "INTAKE_BUCKET": gcs.bucket,
        "STORAGE_EMULATOR_HOST": gcs.endpoint,
        "GCS_SIGNING_KEY_FILE": str(_signing_key(tmp_path)),
        "GOOGLE_CLOUD_PROJECT": pubsub.project,
        "PUBSUB_EMULATOR_HOST": pubsub.host,
        "REDIS_URL": redis.url,
        "SMTP_PORT": str(smtp.port),
        "SMTP_USERNAME": smtp.username,
        "SMTP_PASSWORD": smtp.password,
        "SMTP_CA_FILE": smtp.ca_file,
        "INTAKE_MAIL_FROM": SENDER,
    }.items():
        monkeypatch.setenv(name, value)
    return CloudriftSettings.from_yaml(SETTINGS_DIR / "local-gcp.yaml")


async def test_full_flow_on_gcs_emulator_pubsub_redis_and_smtp(
    gcp_standins: CloudriftSettings,
    gcs: GCSEmulator,
    pubsub: PubSubEndpoint,
    redis: RedisServer,
    smtp_servers: dict[str, SMTPServer],
) -> None:
    """Upload → Pub/Sub job → worker → record → redis cache hit → SMTP mail (STARTTLS +
    AUTH) → GCS signed GET, and the document.processed event through a Pub/Sub topic to
    its audit subscription: the Google Cloud code paths, with the same app code as the demo."""
    content = b"google one\ngoogle two\n"
    providers = {
        "storage.default": "gcs",
        "queue.default": "gcp_pubsub",
        "document.default": "memory",
        "cache.default": "redis",
        "email.default": "smtp",
        "topic.default": "gcp_pubsub",
        "subscription.audit": "gcp_pubsub",
    }
    body = await flow_on_standins(gcp_standins, providers, content)

    doc_id = body["id"]
    stored = gcs.request("GET", f"/storage/v1/b/{gcs.bucket}/o/documents%2F{doc_id}?alt=media")
    assert stored == content
    assert pubsub.state.calls["publish"] >= 1 and pubsub.state.calls["acknowledge"] >= 1
    with redis.client() as direct:
        assert direct.exists(records.cache_key(doc_id)) == 1
    [mail] = smtp_servers["starttls"].received
    assert mail.mail_from == SENDER
    message = email.message_from_bytes(mail.data)
    names = [part.get_filename() for part in message.walk() if part.get_filename()]
    assert names == [f"summary-{doc_id}.json"]
