"""Amazon DocumentDB: TLS on by default, ``retryWrites=false`` on every path, IAM auth.

DocumentDB rejects retryable writes, so every plan built here sets
``retryWrites=false`` as a driver keyword (which overrides the URI) and refuses a URI
that asks for them. ``auth="iam"`` uses the ``MONGODB-AWS`` mechanism with the default
AWS credential chain (env vars, profile, instance or task role).
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
    uri_has_credentials,
)

DEFAULT_PORT = 27017
WHY = "DocumentDB rejects retryable writes"
RULES = ProviderRules("documentdb", no_retryable_writes=WHY)


def plan(
    *,
    uri: str | Secret | None = None,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    username: str | None = None,
    password: str | Secret | None = None,
    auth: Literal["password", "iam"] = "password",
    tls: bool | None = None,
    replica_set: str | None = None,
    read_preference: str | None = None,
    **given: Unpack[ClientOptions],
) -> ConnectionPlan:
    """The DocumentDB connection: ``uri``, or ``host`` + ``username`` + ``password`` (or IAM)."""
    uri_secret, pw = secret(uri), secret(password)
    RULES.refuse_empty(uri=uri_secret, host=host, username=username)
    RULES.refuse_both("uri", "host", given=(uri_secret is not None, host is not None))
    if uri_secret is None and host is None:
        raise ConfigurationError(
            f"{RULES.where} needs uri=... or host=... (with username/password, or auth='iam')"
        )
    RULES.check_auth(auth)
    raw_uri = uri_secret.reveal() if uri_secret is not None else None
    hosts = RULES.check_uri(raw_uri) if raw_uri is not None else ""
    options: dict[str, Any] = {}
    if auth == "iam":
        options.update(_iam(raw_uri, username, pw))
        credentials: dict[str, Secret] = {}
    elif raw_uri is None and (username is None or pw is None):
        RULES.fail("host=... needs username and password (or auth='iam')")
    else:
        credentials = RULES.credentials(raw_uri, username, pw) if raw_uri is not None else {}
    if raw_uri is None:
        assert host is not None
        hosts, uri_secret = RULES.host_uri(host, port, username=username, password=pw, auth=auth)
    assert uri_secret is not None
    options["tls"] = tls_setting(raw_uri, tls, default=True)
    if replica_set is not None:
        options["replicaSet"] = replica_set
    if read_preference is not None:
        options["readPreference"] = read_preference
    return RULES.finish(
        uri=uri_secret,
        hosts=hosts,
        given=given,
        options=options,
        credentials=credentials,
        requires=("pymongo_auth_aws",) if auth == "iam" else (),
        extra="aws" if auth == "iam" else None,
    )


def _iam(raw_uri: str | None, username: str | None, password: Secret | None) -> dict[str, str]:
    """The driver options of ``auth='iam'``; credentials given as well are refused."""
    if username is not None or password is not None or (raw_uri and uri_has_credentials(raw_uri)):
        RULES.fail(
            "auth='iam' takes its credentials from the default AWS chain "
            "(environment, profile, instance or task role); remove username/password"
        )
    return {"authMechanism": "MONGODB-AWS", "authSource": "$external"}
