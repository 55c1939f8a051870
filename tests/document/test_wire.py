"""What each provider's client puts on the wire, proven against the mockupdb test server.

Every test runs for PyMongo Async (the default), Motor and the blocking client. The
server checks SCRAM passwords for real, so a successful login also proves that the
credentials (which hold ``@ : / ? # %``) were escaped correctly in the URI we built.
The document conformance suite runs here too, through PyMongo Async and Motor, on the
server with its data engine (``mongo_wire_data``). Nothing here talks to a live
DocumentDB or Cosmos account.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest

from cloudrift.core.exceptions import BackendClosedError, DocumentConnectionError
from cloudrift.document import aclose_client, connect_mongodb, get_mongodb, get_mongodb_sync
from cloudrift.document import ping as doc_ping
from cloudrift.document import verify as doc_verify
from tests.conformance.document import DocumentConformance
from tests.servers._process import LOOPBACK, free_port
from tests.servers.mongo import PASSWORD, USER, MongoWireServer
from tests.servers.tls import TLSFiles

KINDS = ["pymongo", "motor", "sync"]
FAST = 0.5  # seconds of server selection: failures must surface quickly
COSMOS_ACCOUNT = "acct-1"
COSMOS_KEY = "k3y+/with=base64@chars:?#%=="

Make = Callable[..., Any]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The client flavour under test: PyMongo Async, Motor, or the blocking client."""
    return str(request.param)


@pytest.fixture
async def make(kind: str) -> AsyncIterator[Make]:
    """Build clients of the current kind with a short server selection timeout; close them."""
    made: list[Any] = []

    def build(provider: str, **options: Any) -> Any:
        options.setdefault("server_selection_timeout", FAST)
        if kind == "sync":
            client = get_mongodb_sync(provider, **options)
        else:
            client = get_mongodb(provider, driver=kind, **options)
        made.append(client)
        return client

    yield build
    for client in made:
        await aclose_client(client)


async def run(client: Any, op: Callable[[Any], Any]) -> Any:
    """Run ``op(client)``: in a thread for the blocking client, awaited otherwise."""
    if type(client).__module__.startswith("pymongo.synchronous"):
        return await asyncio.to_thread(op, client)
    return await op(client)


def insert(client: Any) -> Any:
    """insert_one of a small document (awaitable or not, depending on the client)."""
    return client["shop"]["orders"].insert_one({"sku": "A-1"})


def ping_cmd(client: Any) -> Any:
    """The ping command."""
    return client.admin.command("ping")


def documentdb_options(server: MongoWireServer, tls: TLSFiles) -> dict[str, Any]:
    """documentdb options pointing at the TLS wire server with the shared credentials."""
    return {
        "host": LOOPBACK,
        "port": int(server.address.rsplit(":", 1)[1]),
        "username": USER,
        "password": PASSWORD,
        "tls_ca_file": str(tls.ca_cert),
    }


# --------------------------------------------------------------------- handshake


class TestWireConformance(DocumentConformance):
    """The document suite over the real wire protocol: PyMongo Async, Motor, DocumentDB's path."""

    # The wire server announces MongoDB 7 (wire version 21): the drivers themselves
    # refuse sort= in updates, which needs 8.0.
    unsupported = frozenset({"sorted_bulk_update"})

    @pytest.fixture(params=["mongodb-pymongo", "mongodb-motor", "documentdb-pymongo"])
    async def client(
        self, request: pytest.FixtureRequest, mongo_wire_data: MongoWireServer
    ) -> AsyncIterator[Any]:
        """A client of the requested provider and driver on the emptied data server."""
        provider, driver = str(request.param).split("-")
        options: dict[str, Any] = {"server_selection_timeout": 5}
        if provider == "documentdb":
            options.update(
                host=mongo_wire_data.address, username=USER, password=PASSWORD, tls=False
            )
        else:
            options["uri"] = f"mongodb://{mongo_wire_data.address}/"
        client = get_mongodb(provider, driver=driver, **options)
        yield client
        await aclose_client(client)


async def test_app_name_reaches_the_handshake(mongo_wire: MongoWireServer, make: Make) -> None:
    """The app_name option is the application name in every connection's hello."""
    client = make("mongodb", uri=f"mongodb://{mongo_wire.address}/", app_name="orders-svc")
    await run(client, ping_cmd)
    names = {h.doc["client"]["application"]["name"] for h in mongo_wire.handshakes()}
    assert names == {"orders-svc"}


async def test_cosmos_account_key_login_with_at_account_at_app_name(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """account + key log in over TLS to replica set globaldb with appName @account@."""
    mongo_wire_tls.set_name = "globaldb"
    mongo_wire_tls.users = {COSMOS_ACCOUNT: COSMOS_KEY}
    client = make(
        "cosmos",
        account=COSMOS_ACCOUNT,
        account_key=COSMOS_KEY,
        endpoint=mongo_wire_tls.address,
        tls_ca_file=str(tls_files.ca_cert),
    )
    await run(client, insert)
    names = {h.doc["client"]["application"]["name"] for h in mongo_wire_tls.handshakes()}
    assert names == {f"@{COSMOS_ACCOUNT}@"}
    assert mongo_wire_tls.requests("saslStart"), "the client never authenticated"
    assert client.options.replica_set_name == "globaldb"
    assert client.options.pool_options.max_idle_time_seconds == 120


async def test_cosmos_refuses_a_server_outside_replica_set_globaldb(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """A server reporting another replica set name is not used: replicaSet=globaldb is sent."""
    mongo_wire_tls.users = {COSMOS_ACCOUNT: COSMOS_KEY}  # set name stays "rs0"
    client = make(
        "cosmos",
        account=COSMOS_ACCOUNT,
        account_key=COSMOS_KEY,
        endpoint=mongo_wire_tls.address,
        tls_ca_file=str(tls_files.ca_cert),
    )
    with pytest.raises(DocumentConnectionError):
        await doc_verify(client, timeout=5)


# ------------------------------------------------------------- retryable writes


async def test_documentdb_host_login_sends_no_txn_number_on_insert(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """DocumentDB (host + credentials) logs in over TLS and inserts without a txnNumber."""
    client = make("documentdb", **documentdb_options(mongo_wire_tls, tls_files))
    await run(client, insert)
    [request] = mongo_wire_tls.requests("insert")
    assert "txnNumber" not in request.doc
    assert mongo_wire_tls.requests("saslContinue"), "the login never completed"


async def test_documentdb_uri_login_sends_no_txn_number_on_insert(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """DocumentDB from a URI that does not mention retryWrites still inserts without txnNumber."""
    uri = f"mongodb://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@{mongo_wire_tls.address}/"
    client = make("documentdb", uri=uri, tls_ca_file=str(tls_files.ca_cert))
    await run(client, insert)
    [request] = mongo_wire_tls.requests("insert")
    assert "txnNumber" not in request.doc


async def test_cosmos_connection_string_sends_no_txn_number_on_insert(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """A Cosmos connection string without retrywrites=false still inserts without txnNumber."""
    userinfo = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
    cs = f"mongodb://{userinfo}@{mongo_wire_tls.address}/?ssl=true"
    client = make("cosmos", connection_string=cs, tls_ca_file=str(tls_files.ca_cert))
    await run(client, insert)
    [request] = mongo_wire_tls.requests("insert")
    assert "txnNumber" not in request.doc


async def test_self_hosted_mongodb_keeps_retryable_writes(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """The mongodb provider leaves retryable writes on: its insert carries a txnNumber."""
    client = make("mongodb", uri=f"mongodb://{mongo_wire.address}/")
    await run(client, insert)
    [request] = mongo_wire.requests("insert")
    assert "txnNumber" in request.doc


# ----------------------------------------------------------------- auth mechanism


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [(None, "SCRAM-SHA-1"), (["SCRAM-SHA-256", "SCRAM-SHA-1"], "SCRAM-SHA-256")],
)
async def test_scram_mechanism_follows_what_the_server_advertises(
    mongo_wire: MongoWireServer, make: Make, advertised: list[str] | None, expected: str
) -> None:
    """Credentials given apart log in with the SCRAM mechanism the server negotiates."""
    mongo_wire.sasl_mechanisms = advertised
    client = make(
        "mongodb", uri=f"mongodb://{mongo_wire.address}/", username=USER, password=PASSWORD
    )
    await run(client, ping_cmd)
    assert {r.doc["mechanism"] for r in mongo_wire.requests("saslStart")} == {expected}


async def test_documentdb_iam_auth_sends_mongodb_aws(
    mongo_wire_tls: MongoWireServer,
    tls_files: TLSFiles,
    make: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auth='iam' authenticates with MONGODB-AWS using the default AWS credential chain."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWIRETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wire-test-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    client = make(
        "documentdb",
        host=LOOPBACK,
        port=int(mongo_wire_tls.address.rsplit(":", 1)[1]),
        auth="iam",
        tls_ca_file=str(tls_files.ca_cert),
    )
    with pytest.raises(DocumentConnectionError, match="authentication failed"):
        await doc_verify(client, timeout=5)
    assert {r.doc["mechanism"] for r in mongo_wire_tls.requests("saslStart")} == {"MONGODB-AWS"}
    assert {r.doc["$db"] for r in mongo_wire_tls.requests("saslStart")} == {"$external"}


# -------------------------------------------------------------------------- TLS


async def test_documentdb_without_the_ca_fails_tls_verification_fast(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """An untrusted server certificate becomes DocumentConnectionError naming the host."""
    options = documentdb_options(mongo_wire_tls, tls_files)
    del options["tls_ca_file"]
    client = make("documentdb", **options)
    with pytest.raises(DocumentConnectionError, match="certificate was not trusted") as err:
        await doc_verify(client, timeout=10)
    assert err.value.host == mongo_wire_tls.address
    assert PASSWORD not in str(err.value)
    trusted = make("documentdb", **documentdb_options(mongo_wire_tls, tls_files))
    await doc_verify(trusted, timeout=10)  # the same server, now with the CA: it works


async def test_documentdb_tls_insecure_is_an_explicit_opt_out(
    mongo_wire_tls: MongoWireServer, tls_files: TLSFiles, make: Make
) -> None:
    """tls_insecure=True (and only that) accepts a certificate the client cannot verify."""
    options = documentdb_options(mongo_wire_tls, tls_files)
    del options["tls_ca_file"]
    client = make("documentdb", tls_insecure=True, **options)
    await doc_verify(client, timeout=5)


async def test_documentdb_speaks_tls_by_default(mongo_wire: MongoWireServer, make: Make) -> None:
    """documentdb's default TLS cannot talk to a plain-TCP server: the check fails."""
    client = make(
        "documentdb",
        host=LOOPBACK,
        port=int(mongo_wire.address.rsplit(":", 1)[1]),
        username=USER,
        password=PASSWORD,
    )
    with pytest.raises(DocumentConnectionError):
        await doc_verify(client, timeout=5)
    assert not mongo_wire.handshakes()


async def test_documentdb_tls_false_talks_plain_tcp(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """tls=False turns TLS off explicitly, and the plain server then serves the client."""
    client = make(
        "documentdb",
        host=LOOPBACK,
        port=int(mongo_wire.address.rsplit(":", 1)[1]),
        username=USER,
        password=PASSWORD,
        tls=False,
    )
    await doc_verify(client, timeout=5)
    assert mongo_wire.handshakes()


# ------------------------------------------------------------------------- pools


async def test_min_pool_size_opens_that_many_connections(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """min_pool_size=3 makes the driver open three pool connections on its own."""
    client = make(
        "mongodb",
        uri=f"mongodb://{mongo_wire.address}/",
        min_pool_size=3,
        # The pool is topped up by the monitor's periodic task; beat often so it runs soon.
        driver_options={"heartbeatFrequencyMS": 500},
    )
    await run(client, ping_cmd)

    def pool_connections() -> int:
        # Every connection sends one handshake; all but the monitor's belong to the pool.
        return len({h.client_port for h in mongo_wire.handshakes()}) - 1

    # Wait in a thread: the async drivers fill the pool from tasks on this event loop.
    await asyncio.to_thread(mongo_wire.wait_for, lambda: pool_connections() >= 3, "3 pool conns")
    assert client.options.pool_options.min_pool_size == 3


async def test_max_pool_size_one_serialises_on_one_connection(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """max_pool_size=1 makes five concurrent pings share a single pool connection."""
    client = make("mongodb", uri=f"mongodb://{mongo_wire.address}/", max_pool_size=1)
    await asyncio.gather(*(run(client, ping_cmd) for _ in range(5)))
    pings = mongo_wire.requests("ping")
    assert len(pings) == 5 and len({p.client_port for p in pings}) == 1
    assert client.options.pool_options.max_pool_size == 1


# ---------------------------------------------------------- connect-time failures


async def test_closed_port_fails_fast_naming_the_host(make: Make) -> None:
    """Nothing listening → DocumentConnectionError naming host:port, within selection timeout."""
    port = free_port()
    client = make("mongodb", uri=f"mongodb://{LOOPBACK}:{port}/")
    with pytest.raises(DocumentConnectionError, match=f"{LOOPBACK}:{port}") as err:
        await doc_verify(client, timeout=10)
    assert err.value.host == f"{LOOPBACK}:{port}"
    assert await doc_ping(client, timeout=10) is False


async def test_wrong_password_fails_with_auth_error_and_no_secret(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """Code 18 becomes DocumentConnectionError saying authentication failed; no password shown."""
    wrong = "Wr0ng@pa:ss/word"
    uri = f"mongodb://{quote(USER, safe='')}:{quote(wrong, safe='')}@{mongo_wire.address}/"
    client = make("mongodb", uri=uri)
    with pytest.raises(DocumentConnectionError, match="authentication failed at") as err:
        await doc_verify(client, timeout=10)
    assert err.value.host == mongo_wire.address
    shown = f"{err.value} {err.value!r} {client!r}"
    assert wrong not in shown and quote(wrong, safe="") not in shown
    assert await doc_ping(client, timeout=10) is False


async def test_right_credentials_pass_verify_and_ping(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """The positive control: correct credentials verify and ping True."""
    uri = f"mongodb://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@{mongo_wire.address}/"
    client = make("mongodb", uri=uri)
    await doc_verify(client, timeout=10)
    assert await doc_ping(client, timeout=10) is True


async def test_silent_server_times_out_within_the_verify_timeout() -> None:
    """A server that accepts but never answers makes verify fail after its timeout, not hang."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        address = f"{LOOPBACK}:{listener.getsockname()[1]}"
        client = get_mongodb("mongodb", uri=f"mongodb://{address}/")
        try:
            with pytest.raises(DocumentConnectionError, match=r"did not answer within 0\.3s"):
                await doc_verify(client, timeout=0.3)
            assert await doc_ping(client, timeout=0.3) is False
        finally:
            await aclose_client(client)


async def test_connect_mongodb_verifies_before_returning(mongo_wire: MongoWireServer) -> None:
    """connect_mongodb returns a verified client, and raises for an unreachable host."""
    client = await connect_mongodb("mongodb", uri=f"mongodb://{mongo_wire.address}/")
    try:
        assert mongo_wire.requests("ping")
    finally:
        await aclose_client(client)
    with pytest.raises(DocumentConnectionError):
        await connect_mongodb(
            "mongodb", uri=f"mongodb://{LOOPBACK}:{free_port()}/", server_selection_timeout=FAST
        )


SRV = {
    "uri": "mongodb+srv://cluster.nonexistent.invalid/",
    "connect_timeout": 1.0,
    "server_selection_timeout": 1.0,
}


def test_unresolvable_srv_record_fails_the_blocking_client_at_build() -> None:
    """The blocking client resolves mongodb+srv:// while built: DocumentConnectionError."""
    with pytest.raises(DocumentConnectionError, match=r"cluster\.nonexistent\.invalid") as err:
        get_mongodb_sync("mongodb", **SRV)
    assert err.value.host == "cluster.nonexistent.invalid"


async def test_unresolvable_srv_record_fails_the_async_client_at_verify() -> None:
    """The async client resolves mongodb+srv:// on first use: verify names the record."""
    client = get_mongodb("mongodb", **SRV)
    try:
        with pytest.raises(DocumentConnectionError, match=r"nonexistent\.invalid") as err:
            await doc_verify(client, timeout=10)
    finally:
        await aclose_client(client)
    assert err.value.host == "cluster.nonexistent.invalid"


async def test_verify_on_a_closed_client_says_it_is_closed(
    mongo_wire: MongoWireServer, make: Make
) -> None:
    """A client used after close makes verify raise BackendClosedError and ping return False."""
    client = make("mongodb", uri=f"mongodb://{mongo_wire.address}/")
    await doc_verify(client, timeout=5)
    await aclose_client(client)
    with pytest.raises(BackendClosedError, match="was closed"):
        await doc_verify(client, timeout=5)
    assert await doc_ping(client, timeout=5) is False
