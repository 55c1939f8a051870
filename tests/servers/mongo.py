"""A MongoDB wire-protocol test server (mockupdb) that records what a driver sends.

No MongoDB server can be installed here (see STANDINS.md), so the document tests use
``mockupdb``, MongoDB's own wire-protocol test server, to prove what each provider's
client actually puts on the wire: the handshake (``appName``), the auth mechanism in
``saslStart``, ``txnNumber`` on inserts (retryable writes), TLS, pool connections.

The server answers ``hello`` like a primary of a replica set (``set_name``, default
``rs0``) running MongoDB 7 (``maxWireVersion`` 21, sessions on), so drivers use their
full modern path. SCRAM-SHA-1 and SCRAM-SHA-256 are checked for real against
``users`` (default: ``USER`` with ``PASSWORD``, which holds every character a URI
must escape), so a successful login proves the password reached the driver intact; a
wrong password gets code 18 (AuthenticationFailed). ``MONGODB-AWS`` is recorded and
always refused with code 18. TLS uses the session's trustme certificate; the
handshake runs on the per-connection thread, so a client that rejects the
certificate does not stop the server from accepting the next connection.

``mongo_wire_data`` is the same server with a data engine behind it
(:class:`WireEngine`): insert, find (with getMore), update, delete, count, distinct,
aggregate, createIndexes and drop are executed on an in-process ``mongomock`` database,
so the document conformance suite runs through the real drivers' wire protocol. What
it cannot do is answered with MongoDB's own errors, never a fake success: any other
command is ``CommandNotFound`` (59), a multi-document transaction
``IllegalOperation`` (20, as a standalone server answers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mongomock
import pytest
from bson.int64 import Int64
from bson.objectid import ObjectId
from mockupdb import MockupDB
from pymongo.errors import OperationFailure

from tests.servers._process import LOOPBACK
from tests.servers.tls import TLSFiles

MAX_WIRE_VERSION = 21  # MongoDB 7.0
#: The user every wire server knows; the password holds every character a URI must escape.
USER = "app@user:x"
PASSWORD = "p@ss:w/o?r#d%20[]"


@dataclass(frozen=True)
class WireRequest:
    """One request the server received: the command name, its document, the client port."""

    name: str
    doc: dict[str, Any]
    client_port: int


#: Commands every connection sends that carry no data; answered ``ok`` by the engine.
_SESSION_COMMANDS = frozenset({"ping", "endsessions", "buildinfo", "getlasterror"})


class WireEngine:
    """Executes MongoDB's CRUD commands on an in-process mongomock database.

    One lock serialises the commands of every connection thread (mongomock is not
    thread-safe); cursors are kept until exhausted or killed, as a server keeps them.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = mongomock.MongoClient()
        self._cursors: dict[int, tuple[str, list[dict[str, Any]]]] = {}
        self._next_cursor = 1

    def reset(self) -> None:
        """Drop every database and open cursor."""
        with self.lock:
            self.client = mongomock.MongoClient()
            self._cursors.clear()

    def execute(self, name: str, doc: dict[str, Any], db_name: str) -> dict[str, Any] | None:
        """The reply to command ``name``, or None when it is not a data command."""
        handler = getattr(self, f"_cmd_{name.lower()}", None)
        if handler is None:
            return None
        if doc.get("startTransaction") or doc.get("autocommit") is False:
            raise OperationFailure(
                "Transaction numbers are only allowed on a replica set member or mongos",
                code=20,
            )
        with self.lock:
            reply: dict[str, Any] = handler(doc, self.client[db_name])
        return reply

    # ------------------------------------------------------------------ cursors

    def _cursor(
        self, ns: str, docs: list[dict[str, Any]], batch_size: int | None
    ) -> dict[str, Any]:
        size = batch_size or len(docs)
        first, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            cursor_id = self._next_cursor
            self._next_cursor += 1
            self._cursors[cursor_id] = (ns, rest)
        return {"cursor": {"id": Int64(cursor_id), "ns": ns, "firstBatch": first}, "ok": 1}

    def _cmd_getmore(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        cursor_id = int(doc["getMore"])
        if cursor_id not in self._cursors:
            raise OperationFailure(f"cursor id {cursor_id} not found", code=43)
        ns, docs = self._cursors.pop(cursor_id)
        size = doc.get("batchSize") or len(docs)
        batch, rest = docs[:size], docs[size:]
        if rest:
            self._cursors[cursor_id] = (ns, rest)
        next_id = Int64(cursor_id if rest else 0)
        return {"cursor": {"id": next_id, "ns": ns, "nextBatch": batch}, "ok": 1}

    def _cmd_killcursors(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        killed = [c for c in doc.get("cursors", []) if self._cursors.pop(int(c), None)]
        return {"cursorsKilled": killed, "ok": 1}

    # ---------------------------------------------------------------- commands

    def _cmd_find(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        coll = db[doc["find"]]
        cursor = coll.find(doc.get("filter") or {}, doc.get("projection"))
        if doc.get("sort"):
            cursor = cursor.sort(list(doc["sort"].items()))
        if doc.get("skip"):
            cursor = cursor.skip(doc["skip"])
        if doc.get("limit"):
            cursor = cursor.limit(abs(doc["limit"]))
        docs = list(cursor)
        batch = None if doc.get("singleBatch") else doc.get("batchSize")
        return self._cursor(f"{db.name}.{coll.name}", docs, batch)

    def _cmd_aggregate(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        coll = db[doc["aggregate"]]
        docs = list(coll.aggregate(doc["pipeline"]))
        batch = (doc.get("cursor") or {}).get("batchSize")
        return self._cursor(f"{db.name}.{coll.name}", docs, batch)

    def _cmd_count(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        return {"n": db[doc["count"]].count_documents(doc.get("query") or {}), "ok": 1}

    def _cmd_distinct(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        values = db[doc["distinct"]].distinct(doc["key"], doc.get("query") or {})
        return {"values": values, "ok": 1}

    def _cmd_insert(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        coll, ordered = db[doc["insert"]], doc.get("ordered", True)
        inserted, errors = 0, []
        for index, item in enumerate(doc.get("documents", [])):
            try:
                coll.insert_one(item)
                inserted += 1
            except OperationFailure as exc:
                errors.append({"index": index, "code": exc.code or 1, "errmsg": str(exc)})
                if ordered:
                    break
        return {"n": inserted, "ok": 1, **({"writeErrors": errors} if errors else {})}

    def _cmd_update(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        coll, ordered = db[doc["update"]], doc.get("ordered", True)
        matched = modified = 0
        upserted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for spec in doc.get("updates", []):
            for option in ("sort", "collation", "hint"):
                if option in spec:
                    # mongomock cannot honour it; refuse rather than update some match.
                    raise OperationFailure(f"this test server has no {option} in updates", code=9)
        for index, spec in enumerate(doc.get("updates", [])):
            update, upsert = spec["u"], bool(spec.get("upsert"))
            try:
                if not any(str(k).startswith("$") for k in update):
                    result = coll.replace_one(spec["q"], update, upsert=upsert)
                elif spec.get("multi"):
                    result = coll.update_many(
                        spec["q"], update, upsert=upsert, array_filters=spec.get("arrayFilters")
                    )
                else:
                    result = coll.update_one(
                        spec["q"], update, upsert=upsert, array_filters=spec.get("arrayFilters")
                    )
            except OperationFailure as exc:
                errors.append({"index": index, "code": exc.code or 1, "errmsg": str(exc)})
                if ordered:
                    break
                continue
            matched += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
        reply: dict[str, Any] = {"n": matched + len(upserted), "nModified": modified, "ok": 1}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _cmd_delete(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        coll, deleted = db[doc["delete"]], 0
        for spec in doc.get("deletes", []):
            one = spec.get("limit") == 1
            result = coll.delete_one(spec["q"]) if one else coll.delete_many(spec["q"])
            deleted += result.deleted_count
        return {"n": deleted, "ok": 1}

    def _cmd_createindexes(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        coll = db[doc["createIndexes"]]
        before = len(coll.index_information())
        for index in doc["indexes"]:
            options = {k: v for k, v in index.items() if k in ("name", "unique", "sparse")}
            coll.create_index(list(index["key"].items()), **options)
        after = len(coll.index_information())
        return {"numIndexesBefore": before, "numIndexesAfter": after, "ok": 1}

    def _cmd_drop(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        db.drop_collection(doc["drop"])
        return {"ok": 1}

    def _cmd_dropdatabase(self, doc: dict[str, Any], db: Any) -> dict[str, Any]:
        self.client.drop_database(db.name)
        return {"ok": 1}


class MongoWireServer(MockupDB):  # type: ignore[misc]
    """mockupdb on 127.0.0.1 that answers like a replica-set primary and records requests."""

    def __init__(
        self, *, tls: TLSFiles | None = None, set_name: str = "rs0", engine: bool = False
    ) -> None:
        super().__init__(request_timeout=5)
        #: Executes data commands when set; otherwise they are only recorded.
        self.engine = WireEngine() if engine else None
        self.tls = tls
        self.set_name = set_name
        self.sasl_mechanisms: list[str] | None = None
        self.users: dict[str, str] = {USER: PASSWORD}
        self._scram: dict[int, dict[str, Any]] = {}
        self.started_in = 0.0
        self._records: list[WireRequest] = []
        self._records_lock = threading.Lock()
        self.tls_failures: list[str] = []
        self.autoresponds(self._respond)

    # ------------------------------------------------------------------ serving

    def run(self) -> int:
        """Listen on a free 127.0.0.1 port (TLS-wrapped when ``tls`` is set)."""
        began = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        sock.listen(128)
        self._address = (LOOPBACK, sock.getsockname()[1])
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls.server_cert), str(self.tls.server_key))
            # Handshake lazily on the connection's own thread (not in accept()), so a
            # client refusing our certificate cannot kill the accept loop.
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._listening_sock = sock
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()
        self.started_in = time.monotonic() - began
        return int(self._address[1])

    def _accept_loop(self) -> None:
        try:
            super()._accept_loop()
        except OSError:
            # stop() closed the listening socket under the loop: a normal shutdown.
            if not self._stopped:
                raise

    def _server_loop(self, client: Any, client_addr: Any) -> None:
        try:
            super()._server_loop(client, client_addr)
        except (ssl.SSLError, OSError) as exc:
            # A client that rejects our TLS certificate (or speaks plain TCP to TLS)
            # ends up here; record it and drop only this connection.
            self.tls_failures.append(repr(exc))
            client.close()

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, exactly as the server reports itself in ``hello``."""
        return f"{LOOPBACK}:{self._address[1]}"

    # --------------------------------------------------------------- responding

    def _respond(self, request: Any) -> bool:
        doc = dict(request.doc)
        name = getattr(request, "command_name", None) or next(iter(doc), "")
        with self._records_lock:
            self._records.append(WireRequest(name, doc, request.client_port))
        if name.lower() in ("hello", "ismaster"):
            reply: dict[str, Any] = {
                "ismaster": True,
                "isWritablePrimary": True,
                "helloOk": True,
                "setName": self.set_name,
                "hosts": [self.address],
                "primary": self.address,
                "me": self.address,
                "minWireVersion": 0,
                "maxWireVersion": MAX_WIRE_VERSION,
                "logicalSessionTimeoutMinutes": 30,
                "maxBsonObjectSize": 16 * 1024 * 1024,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
            }
            if doc.get("loadBalanced"):
                # Behind a load balancer (Firestore) a server names its service in hello.
                reply["serviceId"] = ObjectId()
            if self.sasl_mechanisms is not None and "saslSupportedMechs" in doc:
                reply["saslSupportedMechs"] = self.sasl_mechanisms
            return bool(request.reply(reply))
        if name == "saslStart":
            return self._sasl_start(request, doc)
        if name == "saslContinue":
            return self._sasl_continue(request, doc)
        if self.engine is not None:
            return self._execute(request, name, doc)
        if name == "insert":
            return bool(request.reply({"n": max(1, len(request.docs) - 1)}))
        return bool(request.ok())

    def _execute(self, request: Any, name: str, doc: dict[str, Any]) -> bool:
        assert self.engine is not None
        try:
            reply = self.engine.execute(name, doc, str(doc.get("$db", "test")))
        except OperationFailure as exc:
            return bool(request.command_err(code=exc.code or 1, errmsg=str(exc)))
        if reply is not None:
            return bool(request.reply(reply))
        if name.lower() in _SESSION_COMMANDS:
            return bool(request.ok())
        # Never a fake success for a command the engine does not execute.
        return bool(request.command_err(code=59, errmsg=f"no such command: '{name}'"))

    # ------------------------------------------------------------ SCRAM (RFC 5802)

    def _refuse(self, request: Any) -> bool:
        return bool(request.command_err(code=18, errmsg="Authentication failed."))

    def _sasl_start(self, request: Any, doc: dict[str, Any]) -> bool:
        mechanism = doc.get("mechanism")
        hashes = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
        if mechanism not in hashes:
            return self._refuse(request)
        bare = bytes(doc["payload"]).decode()[3:]  # drop the "n,," GS2 header
        fields = dict(part.split("=", 1) for part in bare.split(","))
        user = fields["n"].replace("=2C", ",").replace("=3D", "=")
        password = self.users.get(user)
        if password is None:
            return self._refuse(request)
        if mechanism == "SCRAM-SHA-1":  # MongoDB hashes the password first for SHA-1
            password = hashlib.md5(f"{user}:mongo:{password}".encode()).hexdigest()
        salt, iterations = os.urandom(16), 4096
        nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        digest = hashes[mechanism]
        salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)
        self._scram[request.client_port] = {
            "digest": digest,
            "salted": salted,
            "bare": bare,
            "server_first": server_first,
        }
        return bool(
            request.reply(
                {"conversationId": 1, "done": False, "payload": server_first.encode(), "ok": 1}
            )
        )

    def _sasl_continue(self, request: Any, doc: dict[str, Any]) -> bool:
        state = self._scram.pop(request.client_port, None)
        if state is None:  # the final empty round after a finished exchange
            return bool(request.reply({"conversationId": 1, "done": True, "payload": b""}))
        final = bytes(doc["payload"]).decode()
        without_proof, _, proof = final.rpartition(",p=")
        message = f"{state['bare']},{state['server_first']},{without_proof}".encode()
        digest, salted = state["digest"], state["salted"]
        client_key = hmac.digest(salted, b"Client Key", digest)
        stored_key = hashlib.new(digest, client_key).digest()
        signature = hmac.digest(stored_key, message, digest)
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if not hmac.compare_digest(base64.b64decode(proof), expected):
            return self._refuse(request)
        server_key = hmac.digest(salted, b"Server Key", digest)
        verifier = base64.b64encode(hmac.digest(server_key, message, digest)).decode()
        return bool(
            request.reply({"conversationId": 1, "done": True, "payload": f"v={verifier}".encode()})
        )

    # ---------------------------------------------------------------- inspecting

    def reset(self) -> None:
        """Forget recorded requests and restore the default answers."""
        with self._records_lock:
            self._records.clear()
        self.tls_failures.clear()
        self.set_name = "rs0"
        self.sasl_mechanisms = None
        self.users = {USER: PASSWORD}
        if self.engine is not None:
            self.engine.reset()

    def requests(self, name: str | None = None) -> list[WireRequest]:
        """Every request received (since the last reset), or those of one command."""
        with self._records_lock:
            found = list(self._records)
        if name is None:
            return found
        return [r for r in found if r.name.lower() == name.lower()]

    def handshakes(self) -> list[WireRequest]:
        """The first ``hello`` of each connection: the one carrying the client metadata.

        Later ``hello`` requests on a connection are heartbeats and carry no metadata.
        """
        hellos = self.requests("hello") + self.requests("ismaster")
        return [h for h in hellos if "client" in h.doc]

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Poll until ``check()`` is true; fail naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.01)
        pytest.fail(f"the wire server never saw {what}; it saw {self.requests()}", pytrace=False)


def _start(tls: TLSFiles | None = None, *, engine: bool = False) -> MongoWireServer:
    server = MongoWireServer(tls=tls, engine=engine)
    try:
        server.run()
    except Exception as exc:
        pytest.fail(f"the MongoDB wire test server could not start: {exc!r}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def mongo_wire_server() -> Iterator[MongoWireServer]:
    """A plain-TCP MongoDB wire test server for the whole session."""
    server = _start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo_wire_tls_server(tls_files: TLSFiles) -> Iterator[MongoWireServer]:
    """A TLS-only MongoDB wire test server (trustme certificate) for the whole session."""
    server = _start(tls_files)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mongo_wire(mongo_wire_server: MongoWireServer) -> MongoWireServer:
    """The session's plain wire server with its records cleared for this test."""
    mongo_wire_server.reset()
    return mongo_wire_server


@pytest.fixture
def mongo_wire_tls(mongo_wire_tls_server: MongoWireServer) -> MongoWireServer:
    """The session's TLS wire server with its records cleared for this test."""
    mongo_wire_tls_server.reset()
    return mongo_wire_tls_server


@pytest.fixture(scope="session")
def mongo_wire_data_server() -> Iterator[MongoWireServer]:
    """A plain-TCP wire test server that executes data commands, for the whole session."""
    server = _start(engine=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mongo_wire_data(mongo_wire_data_server: MongoWireServer) -> MongoWireServer:
    """The session's data-executing wire server, emptied for this test."""
    mongo_wire_data_server.reset()
    return mongo_wire_data_server
