"""Firestore with MongoDB compatibility: the options Google requires, proven on the wire.

The mockupdb test server (TLS, real SCRAM) shows what PyMongo Async, Motor and the
blocking client send for a ``firestore`` plan: load-balanced mode, SCRAM-SHA-256, no
``txnNumber`` (retryable writes off), the application name, and credentials holding
``@ : / ? # %`` escaped. Nothing here talks to a live Firestore database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.document import aclose_client, get_mongodb, get_mongodb_sync
from cloudrift.document.firestore import OIDC_PROPERTIES, plan
from tests.document.test_wire import insert, run
from tests.servers._process import LOOPBACK
from tests.servers.mongo import PASSWORD, USER, MongoWireServer
from tests.servers.tls import TLSFiles

HOST = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d.us-east1.firestore.goog"

Make = Callable[..., Any]


@pytest.fixture(params=["pymongo", "motor", "sync"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """Build firestore clients of one kind with a short server selection timeout."""
    made: list[Any] = []

    def build(**options: Any) -> Any:
        options.setdefault("server_selection_timeout", 2)
        if request.param == "sync":
            client = get_mongodb_sync("firestore", **options)
        else:
            client = get_mongodb("firestore", driver=request.param, **options)
        made.append(client)
        return client

    yield build
    for client in made:
        await aclose_client(client)


def wire_options(server: MongoWireServer, tls: TLSFiles) -> dict[str, Any]:
    """host/port/credentials of the TLS wire server, trusting its CA."""
    return {
        "host": LOOPBACK,
        "port": int(server.address.rsplit(":", 1)[1]),
        "username": USER,
        "password": PASSWORD,
        "tls_ca_file": str(tls.ca_cert),
    }


# ------------------------------------------------------------------------ the wire


async def test_host_login_is_load_balanced_scram_sha_256_without_txn_number(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """host + credentials: TLS, a load-balanced hello, SCRAM-SHA-256 with the escaped
    credentials, and an insert without txnNumber (retryable writes off)."""
    client = make(**wire_options(mongo_wire_tls, tls_files), app_name="orders-svc")
    await run(client, insert)
    [request] = mongo_wire_tls.requests("insert")
    assert "txnNumber" not in request.doc
    assert {r.doc["mechanism"] for r in mongo_wire_tls.requests("saslStart")} == {"SCRAM-SHA-256"}
    assert mongo_wire_tls.requests("saslContinue"), "the login never completed"
    handshakes = mongo_wire_tls.handshakes()
    assert handshakes and all(h.doc.get("loadBalanced") is True for h in handshakes)
    assert {h.doc["client"]["application"]["name"] for h in handshakes} == {"orders-svc"}


async def test_connection_string_login_escapes_credentials_and_keeps_the_rules(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """Google's connection string with escaped credentials logs in; retryWrites stays off."""
    userinfo = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
    uri = (
        f"mongodb://{userinfo}@{mongo_wire_tls.address}/orders"
        "?loadBalanced=true&tls=true&retryWrites=false"
    )
    client = make(uri=uri, tls_ca_file=str(tls_files.ca_cert))
    await run(client, insert)
    [request] = mongo_wire_tls.requests("insert")
    assert "txnNumber" not in request.doc
    assert {r.doc["mechanism"] for r in mongo_wire_tls.requests("saslStart")} == {"SCRAM-SHA-256"}


# ---------------------------------------------------------------------- the plan


def test_plan_from_host_sets_every_required_option() -> None:
    """host + credentials: port 443, the database id as path, loadBalanced, TLS,
    retryWrites=false and SCRAM-SHA-256; the password never shows in repr."""
    built = plan(host=HOST, database="orders", username="app", password="s3cr:t@/x")
    assert built.options["loadBalanced"] is True and built.options["tls"] is True
    assert built.options["retryWrites"] is False
    assert built.options["authMechanism"] == "SCRAM-SHA-256"
    assert built.uri.reveal() == f"mongodb://app:s3cr%3At%40%2Fx@{HOST}:443/orders"
    assert "s3cr" not in repr(built)


def test_iam_uses_pymongo_oidc_for_google_cloud() -> None:
    """auth='iam' signs in with MONGODB-OIDC from the metadata server; no password."""
    built = plan(host=HOST, auth="iam")
    assert built.options["authMechanism"] == "MONGODB-OIDC"
    assert built.options["authMechanismProperties"] == OIDC_PROPERTIES
    assert built.credentials == {}
    with pytest.raises(ConfigurationError, match="metadata server"):
        plan(host=HOST, auth="iam", username="app", password="pw")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"host": HOST, "username": "u", "password": "p", "tls": False}, "requires TLS"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db?tls=false"}, "requires TLS"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db?retryWrites=true"}, "retryWrites=true"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db?loadBalanced=false"}, "load-balanced"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db?replicaSet=rs0"}, "replicaset"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db?authMechanism=SCRAM-SHA-1"}, "SCRAM-SHA-256"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db", "database": "other"}, "names the database"),
        ({"uri": f"mongodb://u:p@{HOST}:443/db", "host": HOST}, "not both"),
        ({"host": HOST}, "username and password"),
        ({"host": HOST, "username": "u", "password": "p", "driver_options": {"tls": False}}, "TLS"),
        ({"host": f"{HOST},{HOST}", "username": "u", "password": "p"}, "one load-balanced host"),
    ],
)
def test_options_contradicting_googles_requirements_are_refused(
    options: dict[str, Any], match: str
) -> None:
    """TLS off, retryable writes on, a replica set, another mechanism... each raise."""
    with pytest.raises(ConfigurationError, match=match):
        plan(**options)


def test_unknown_option_names_the_provider() -> None:
    """A misspelled option is refused by get_mongodb naming the firestore provider."""
    with pytest.raises(ConfigurationError, match="firestore"):
        get_mongodb("firestore", host=HOST, username="u", password="p", datbase="x")
