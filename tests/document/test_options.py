"""Provider routing and option checks: what each provider configures, before any network."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient, MongoClient
from pymongo.uri_parser import parse_uri

from cloudrift.core.exceptions import ConfigurationError
from cloudrift.core.secrets import MASK, Secret
from cloudrift.document import (
    PROVIDERS,
    aclose_client,
    cosmos,
    documentdb,
    get_mongodb,
    get_mongodb_sync,
    mongodb,
)
from cloudrift.document.base import build_uri

NASTY = ["p@ss", "a:b", "x/y", "q?r", "h#sh", "pct%25", "all@:/?#%[] +=&", "ünï€ode"]


# ------------------------------------------------------------------ URI escaping


@pytest.mark.parametrize("password", NASTY)
def test_built_uri_round_trips_any_password_through_pymongo(password: str) -> None:
    """A password with URI metacharacters comes back intact from PyMongo's own URI parser."""
    parsed = parse_uri(
        build_uri(["db.example.com:27017"], username=f"u{password}", password=password)
    )
    assert parsed["username"] == f"u{password}" and parsed["password"] == password
    assert parsed["nodelist"] == [("db.example.com", 27017)]


def test_documentdb_host_form_escapes_credentials_and_sets_its_defaults() -> None:
    """host + username + password → an escaped URI, TLS on and retryWrites off."""
    plan = documentdb.plan(host="docdb.example.com", username="app@x", password="p@:/?#%w")
    parsed = parse_uri(plan.uri.reveal())
    assert (parsed["username"], parsed["password"]) == ("app@x", "p@:/?#%w")
    assert parsed["nodelist"] == [("docdb.example.com", 27017)]
    assert plan.options["retryWrites"] is False and plan.options["tls"] is True
    assert plan.hosts == "docdb.example.com:27017"


def test_cosmos_account_key_builds_the_portal_connection_string() -> None:
    """account + key → <account>.mongo.cosmos.azure.com:10255 with the portal's options."""
    key = "abc+/def==@:?#%"
    plan = cosmos.plan(account="myacct", account_key=key)
    parsed = parse_uri(plan.uri.reveal())
    assert parsed["nodelist"] == [("myacct.mongo.cosmos.azure.com", 10255)]
    assert (parsed["username"], parsed["password"]) == ("myacct", key)
    opts = parsed["options"]
    assert opts["tls"] is True and opts["replicaSet"] == "globaldb"
    assert opts["retryWrites"] is False and opts["maxIdleTimeMS"] == 120  # PyMongo: seconds
    assert opts["appname"] == "@myacct@"
    assert plan.options["retryWrites"] is False


# ------------------------------------------------------------- provider choices


def test_documentdb_iam_uses_mongodb_aws_on_external() -> None:
    """auth='iam' selects MONGODB-AWS against $external and needs the aws extra."""
    plan = documentdb.plan(host="docdb.example.com", auth="iam")
    assert plan.options["authMechanism"] == "MONGODB-AWS"
    assert plan.options["authSource"] == "$external"
    assert plan.requires == ("pymongo_auth_aws",) and plan.extra == "aws"
    assert parse_uri(plan.uri.reveal())["username"] is None


@pytest.mark.parametrize(
    "options",
    [
        {"host": "h", "username": "u", "password": "p"},
        {"uri": "mongodb://u:p@h/"},
        {"uri": "mongodb://h/", "username": "u", "password": "p"},
        {"uri": "mongodb://h/?retryWrites=false"},
        {"host": "h", "auth": "iam"},
        {"uri": "mongodb://h/", "auth": "iam"},
        {"host": "h", "username": "u", "password": "p", "tls": False},
    ],
)
def test_every_documentdb_path_turns_retryable_writes_off(options: dict[str, Any]) -> None:
    """retryWrites=false is set on every DocumentDB path, whatever the auth or URI form."""
    assert documentdb.plan(**options).options["retryWrites"] is False


def test_cosmos_connection_string_without_ssl_still_uses_tls() -> None:
    """A Cosmos connection string that omits ssl=true still connects with TLS."""
    plan = cosmos.plan(connection_string="mongodb://a:k@a.mongo.cosmos.azure.com:10255/")
    assert plan.options["tls"] is True and plan.options["retryWrites"] is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs uri=... or host=..."),
        ({"uri": "mongodb://h/", "host": "h"}, "either uri or host"),
        ({"host": "h", "username": "u"}, "needs username and password"),
        ({"host": "h", "auth": "iam", "password": "p"}, "default AWS chain"),
        ({"uri": "mongodb://u:p@h/", "auth": "iam"}, "default AWS chain"),
        ({"host": "h", "auth": "kerberos"}, "auth must be 'password' or 'iam'"),
        ({"uri": "mongodb://u:p@h/?retryWrites=true"}, "rejects retryable writes"),
        ({"uri": "mongodb://u:p@h/", "driver_options": {"retryWrites": True}}, "cannot be changed"),
        ({"uri": "mongodb://u:p@h/?tls=false", "tls": True}, "conflicts"),
        ({"uri": "mongodb://u:p@h/", "tls": False, "tls_ca_file": "/ca.pem"}, "need TLS"),
        ({"uri": "mongodb://u:p@h/", "username": "u", "password": "p"}, "already holds"),
        ({"host": ""}, "empty string"),
        ({"host": "h", "port": 70000, "username": "u", "password": "p"}, "port must be"),
    ],
)
def test_documentdb_refuses_bad_combinations(options: dict[str, Any], message: str) -> None:
    """Each invalid DocumentDB configuration raises ConfigurationError saying what to fix."""
    with pytest.raises(ConfigurationError, match=message):
        documentdb.plan(**options)


@pytest.mark.parametrize(
    "entra",
    [
        {"managed_identity": True},
        {"credential": object()},
        {"tenant_id": "t", "client_id": "c", "client_secret": "s"},
        {"client_id": "c"},
    ],
)
def test_cosmos_refuses_entra_id_explaining_keys_only(entra: dict[str, Any]) -> None:
    """Managed identity / service principal options fail loudly: the MongoDB API takes keys only."""
    with pytest.raises(ConfigurationError, match="accepts account keys only"):
        cosmos.plan(account="myacct", account_key="k", **entra)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"account": "myacct"}, "missing account_key"),
        ({"connection_string": "mongodb://a:k@h/", "account": "a"}, "not both"),
        ({"connection_string": "mongodb://a:k@h/?retrywrites=true"}, "retryable writes"),
        ({"account": "My_Acct!", "account_key": "k"}, "not a Cosmos account name"),
        ({"connection_string": ""}, "empty string"),
        ({"connection_string": "https://acct.documents.azure.com"}, "must start with mongodb"),
    ],
)
def test_cosmos_refuses_bad_combinations(options: dict[str, Any], message: str) -> None:
    """Each invalid Cosmos configuration raises ConfigurationError saying what to fix."""
    with pytest.raises(ConfigurationError, match=message):
        cosmos.plan(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs uri="),
        ({"uri": "localhost:27017"}, "must start with mongodb"),
        ({"uri": "mongodb://h/", "username": "u"}, "together"),
        ({"uri": "mongodb:///db"}, "names no host"),
        ({"uri": "mongodb://h/", "min_pool_size": 5, "max_pool_size": 2}, "larger than"),
        ({"uri": "mongodb://h/", "connect_timeout": -1}, "must be positive"),
        ({"uri": "mongodb://h/", "max_pool_size": "10"}, "must be an int"),
        ({"uri": "mongodb://h/", "max_pool_size": 5, "driver_options": {"maxPoolSize": 9}}, "once"),
        ({"uri": "mongodb://h/", "app_name": ""}, "non-empty"),
    ],
)
def test_mongodb_refuses_bad_options(options: dict[str, Any], message: str) -> None:
    """Each invalid self-hosted configuration raises ConfigurationError saying what to fix."""
    with pytest.raises(ConfigurationError, match=message):
        mongodb.plan(**options)


def test_mongodb_srv_turns_tls_on_and_plain_uris_leave_it_off() -> None:
    """mongodb+srv:// implies TLS; a plain mongodb:// URI does not force it."""
    assert mongodb.plan(uri="mongodb+srv://cluster.example.net/").options["tls"] is True
    assert "tls" not in mongodb.plan(uri="mongodb://localhost/").options


# ------------------------------------------------------------------- factories


def test_unknown_provider_lists_the_valid_ones_and_suggests() -> None:
    """A misspelled provider names the valid providers and the closest one."""
    with pytest.raises(ConfigurationError, match="valid providers: cosmos, documentdb") as err:
        get_mongodb("documentd")
    assert "Did you mean 'documentdb'?" in str(err.value)


@pytest.mark.parametrize("factory", [get_mongodb, get_mongodb_sync])
def test_misspelled_option_is_refused_with_a_suggestion(factory: Any) -> None:
    """An unknown option is never swallowed: the error suggests the right name."""
    with pytest.raises(ConfigurationError, match="did you mean 'max_pool_size'"):
        factory("mongodb", uri="mongodb://localhost/", max_pool=10)


BASE_OPTIONS: dict[str, dict[str, Any]] = {
    "documentdb": {"host": "docdb.example.com", "username": "u", "password": "p"},
    "cosmos": {"account": "myacct", "account_key": "k"},
    "firestore": {"host": "uid.nam5.firestore.goog", "username": "u", "password": "p"},
    "mongodb": {"uri": "mongodb://localhost/"},
}


@pytest.mark.parametrize("provider", sorted(BASE_OPTIONS))
def test_every_provider_takes_the_shared_pool_options(provider: str) -> None:
    """The pool, timeout and TLS-file options (one option group) mean the same PyMongo
    options on every provider."""
    plan = PROVIDERS[provider]
    module = importlib.import_module(plan.module)
    built = module.plan(
        **BASE_OPTIONS[provider],
        max_pool_size=50,
        min_pool_size=5,
        max_idle_time=30,
        connect_timeout=2,
        socket_timeout=3.5,
        server_selection_timeout=4,
        tls_ca_file="/etc/ca.pem",
        driver_options={"compressors": "zlib"},
    )
    assert {
        k: built.options[k]
        for k in (
            "maxPoolSize",
            "minPoolSize",
            "maxIdleTimeMS",
            "connectTimeoutMS",
            "socketTimeoutMS",
            "serverSelectionTimeoutMS",
            "tlsCAFile",
            "compressors",
        )
    } == {
        "maxPoolSize": 50,
        "minPoolSize": 5,
        "maxIdleTimeMS": 30000,
        "connectTimeoutMS": 2000,
        "socketTimeoutMS": 3500,
        "serverSelectionTimeoutMS": 4000,
        "tlsCAFile": "/etc/ca.pem",
        "compressors": "zlib",
    }


@pytest.mark.parametrize("provider", sorted(BASE_OPTIONS))
def test_plan_called_directly_refuses_an_unknown_option(provider: str) -> None:
    """plan() given a misspelled option raises ConfigurationError with a suggestion (not
    a TypeError, and never silently)."""
    module = importlib.import_module(PROVIDERS[provider].module)
    with pytest.raises(ConfigurationError, match="did you mean 'max_pool_size'"):
        module.plan(**BASE_OPTIONS[provider], max_pool_sise=10)


def test_cosmos_keeps_its_own_app_name() -> None:
    """Cosmos takes no app_name (the portal's appName=@<account>@ stays): refused."""
    with pytest.raises(ConfigurationError, match=r"unknown option.*'app_name'"):
        get_mongodb("cosmos", account="myacct", account_key="k", app_name="svc")
    with pytest.raises(ConfigurationError, match="'app_name'"):
        cosmos.plan(account="myacct", account_key="k", app_name="svc")  # type: ignore[call-arg]


def test_unknown_driver_is_refused() -> None:
    """driver= accepts only 'pymongo' and 'motor'."""
    with pytest.raises(ConfigurationError, match="valid drivers: motor, pymongo"):
        get_mongodb("mongodb", uri="mongodb://localhost/", driver="pymongo_async")


def test_option_the_driver_rejects_becomes_configuration_error() -> None:
    """A driver option PyMongo does not know surfaces as ConfigurationError, not a pymongo error."""
    with pytest.raises(ConfigurationError, match="rejected its options"):
        get_mongodb("mongodb", uri="mongodb://localhost/", driver_options={"noSuchOption": 1})


async def test_each_driver_returns_its_native_client_with_the_options() -> None:
    """Each driver returns its own native client type with our options applied."""
    options = {
        "uri": "mongodb://localhost:27017/",
        "max_pool_size": 200,
        "min_pool_size": 10,
        "server_selection_timeout": 2.5,
        "connect_timeout": 4.0,
        "app_name": "svc",
    }
    clients = [
        get_mongodb("mongodb", **options),
        get_mongodb("mongodb", driver="motor", **options),
        get_mongodb_sync("mongodb", **options),
    ]
    try:
        assert isinstance(clients[0], AsyncMongoClient)
        assert isinstance(clients[1], AsyncIOMotorClient)
        assert isinstance(clients[2], MongoClient)
        for client in clients:
            pool = client.options.pool_options
            assert (pool.max_pool_size, pool.min_pool_size) == (200, 10)
            assert pool.connect_timeout == 4.0 and pool.metadata["application"]["name"] == "svc"
            assert client.options.server_selection_timeout == 2.5
            assert client.options.retry_writes is True
    finally:
        for client in clients:
            await aclose_client(client)


# ---------------------------------------------------------------------- secrets


async def test_secrets_never_show_in_repr_of_plans_or_clients() -> None:
    """Neither our plans nor the returned clients print the password or key."""
    password, key = "Sup3r$ecret@pw", "C0smosKey+/=="
    plans = [
        documentdb.plan(host="h", username="u", password=password),
        documentdb.plan(uri=f"mongodb://u:{quote(password, safe='')}@h/"),
        cosmos.plan(account="myacct", account_key=key),
        mongodb.plan(uri="mongodb://h/", username="u", password=password),
    ]
    clients = [
        get_mongodb("documentdb", host="h", username="u", password=password),
        get_mongodb("cosmos", account="myacct", account_key=key, driver="motor"),
        get_mongodb_sync("mongodb", uri=f"mongodb://u:{quote(password, safe='')}@h/"),
    ]
    try:
        shown = " ".join(repr(x) + str(x) for x in [*plans, *clients])
        for secret_value in (password, key, quote(password, safe=""), quote(key, safe="")):
            assert secret_value not in shown
        assert "cosmos" in repr(plans[2]) and "myacct.mongo.cosmos.azure.com:10255" in repr(
            plans[2]
        )
    finally:
        for client in clients:
            await aclose_client(client)


def test_plan_redacts_its_secrets_from_driver_text() -> None:
    """Driver error text passed through a plan loses the password, raw or escaped."""
    plan = documentdb.plan(host="h", username="u", password="p@ss/word")
    text = f"failed for {plan.uri.reveal()} with p@ss/word"
    cleaned = plan.redact(text)
    assert "p@ss/word" not in cleaned and "p%40ss%2Fword" not in cleaned and MASK in cleaned


def test_credentials_given_as_secret_objects_are_accepted() -> None:
    """Passwords and keys may arrive already wrapped (settings objects hand over Secrets)."""
    plan = documentdb.plan(host="h", username="u", password=Secret("pw"))
    assert parse_uri(plan.uri.reveal())["password"] == "pw"


def test_a_bad_uri_error_does_not_echo_the_password() -> None:
    """A URI PyMongo cannot parse fails as ConfigurationError without its password."""
    with pytest.raises(ConfigurationError) as err:
        get_mongodb("mongodb", uri="mongodb://user:Hunter2secret@host:notaport/")
    assert "Hunter2secret" not in str(err.value)


# ------------------------------------------------------------- extras, imports


@pytest.mark.parametrize(
    ("provider", "options", "missing", "extra"),
    [
        ("mongodb", {"uri": "mongodb://h/", "driver": "motor"}, "motor", "motor"),
        ("mongodb", {"uri": "mongodb://h/"}, "pymongo", "mongo"),
        ("documentdb", {"host": "h", "auth": "iam"}, "pymongo_auth_aws", "aws"),
        ("memory", {}, "mongomock_motor", "embedded"),
    ],
)
def test_a_missing_package_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    options: dict[str, Any],
    missing: str,
    extra: str,
) -> None:
    """Without the driver package, the factory says which pip extra installs it."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    with pytest.raises(ConfigurationError, match=rf'pip install "cloudrift\[{extra}\]"'):
        get_mongodb(provider, **options)


def test_importing_the_category_imports_no_driver() -> None:
    """import cloudrift.document loads neither PyMongo, Motor nor mongomock."""
    code = (
        "import sys, cloudrift.document\n"
        "loaded = [m for m in ('pymongo', 'motor', 'mongomock', 'mongomock_motor') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("driver", ["pymongo", "motor", "sync"])
async def test_aclose_client_twice_is_harmless(driver: str) -> None:
    """aclose_client may be called twice on any client type without error."""
    if driver == "sync":
        client = get_mongodb_sync("mongodb", uri="mongodb://localhost/")
    else:
        client = get_mongodb("mongodb", uri="mongodb://localhost/", driver=driver)
    await aclose_client(client)
    await aclose_client(client)
