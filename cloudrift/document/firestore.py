"""Firestore with MongoDB compatibility: the connection Google documents, and nothing else.

Google requires every client to connect in load-balanced mode, with TLS, and with
retryable writes off (Firestore does not support them). Every plan built here sets
``loadBalanced=true``, ``tls=true`` and ``retryWrites=false`` as driver keywords, and
refuses a URI or option that says otherwise (a replica set or a direct connection
contradicts load-balanced mode). The base connection string is
``mongodb://UID.LOCATION.firestore.goog:443/DATABASE_ID?loadBalanced=true&tls=true&retryWrites=false``.

Auth: a database user's ``username`` + ``password`` (``SCRAM-SHA-256``, as Google
documents), inside ``uri`` or given apart; or ``auth="iam"``: ``MONGODB-OIDC`` with
PyMongo's built-in GCP environment, which takes the access token of the attached service
account from the metadata server (GKE workload identity, Cloud Run, Compute Engine).
"""

from __future__ import annotations

from typing import Any, Literal, Unpack

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import Secret, secret
from cloudrift.document.base import (
    ClientOptions,
    ConnectionPlan,
    ProviderRules,
    tls_setting,
    uri_flag,
    uri_has_credentials,
    uri_options,
)

PORT = 443
WHY = "Firestore with MongoDB compatibility does not support retryable writes"
RULES = ProviderRules("firestore", no_retryable_writes=WHY)
SCRAM = "SCRAM-SHA-256"
#: PyMongo's built-in OIDC callback for Google Cloud, with the resource Google names.
OIDC_PROPERTIES = "ENVIRONMENT:gcp,TOKEN_RESOURCE:FIRESTORE"


def plan(
    *,
    uri: str | Secret | None = None,
    host: str | None = None,
    port: int = PORT,
    database: str | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    auth: Literal["password", "iam"] = "password",
    tls: bool | None = None,
    **given: Unpack[ClientOptions],
) -> ConnectionPlan:
    """The Firestore connection: ``uri``, or ``host`` (``UID.LOCATION.firestore.goog``)
    with ``username`` + ``password`` or ``auth="iam"``; ``database`` is the database id."""
    uri_secret, pw = secret(uri), secret(password)
    RULES.refuse_empty(uri=uri_secret, host=host, database=database, username=username)
    RULES.refuse_both("uri", "host", given=(uri_secret is not None, host is not None))
    if uri_secret is None and host is None:
        raise ConfigurationError(
            f"{RULES.where} needs uri=... (the connection string from the console) or "
            "host='UID.LOCATION.firestore.goog' with username/password or auth='iam'"
        )
    RULES.check_auth(auth)
    raw_uri = uri_secret.reveal() if uri_secret is not None else None
    hosts = ""
    if raw_uri is not None:
        hosts = RULES.check_uri(raw_uri)
        if database is not None:
            RULES.fail("the uri already names the database (its path); do not pass database")
        _refuse_topology(raw_uri)
    if "," in (hosts or host or ""):
        RULES.fail("Firestore is reached through one load-balanced host; give exactly one")
    options: dict[str, Any] = {"loadBalanced": True}
    credentials: dict[str, Secret] = {}
    in_uri = uri_options(raw_uri) if raw_uri is not None else {}
    if auth == "iam":
        if username is not None or pw is not None or (raw_uri and uri_has_credentials(raw_uri)):
            RULES.fail(
                "auth='iam' uses the service account from the metadata server; "
                "remove username/password"
            )
        options |= {"authMechanism": "MONGODB-OIDC", "authMechanismProperties": OIDC_PROPERTIES}
    else:
        if raw_uri is None and (username is None or pw is None):
            RULES.fail("host=... needs username and password (or auth='iam')")
        if raw_uri is not None:
            credentials = RULES.credentials(raw_uri, username, pw)
        mechanism = in_uri.get("authmechanism")
        if mechanism is not None and mechanism.upper() != SCRAM:
            RULES.fail(f"a database user signs in with {SCRAM}, not {mechanism}")
        if mechanism is None:
            options["authMechanism"] = SCRAM
    if raw_uri is None:
        assert host is not None
        hosts, uri_secret = RULES.host_uri(
            host, port, username=username, password=pw, auth=auth, database=database or ""
        )
    assert uri_secret is not None
    if tls is False or (raw_uri is not None and uri_flag(raw_uri, "tls", "ssl") is False):
        RULES.fail("Google requires TLS for Firestore with MongoDB compatibility; remove tls=false")
    options["tls"] = tls_setting(raw_uri, tls, default=True)
    for key in given.get("driver_options") or {}:
        if key.lower() in ("loadbalanced", "tls", "ssl", "replicaset", "directconnection"):
            RULES.fail(f"driver_options cannot set {key}: Firestore needs load-balanced TLS")
    return RULES.finish(
        uri=uri_secret,
        hosts=hosts,
        given=given,
        options=options,
        credentials=credentials,
    )


def _refuse_topology(uri: str) -> None:
    """A URI contradicting load-balanced mode is refused rather than overridden."""
    if uri_flag(uri, "loadBalanced") is False:
        RULES.fail("the uri sets loadBalanced=false; Google requires load-balanced mode")
    for name in ("replicaset", "directconnection"):
        if name in uri_options(uri):
            RULES.fail(f"the uri sets {name}, which load-balanced mode does not allow; remove it")
    if uri.startswith("mongodb+srv://"):
        RULES.fail("Firestore gives a mongodb:// connection string; mongodb+srv:// is not used")


__all__ = ["plan"]
