"""The one Redis implementation of the cache contract, shared by every Redis flavour.

``redis``, ``elasticache`` and ``azure_redis`` differ only in how they fill
:class:`~cloudrift.core.redis.RedisOptions` (host, TLS, and a static password or a
token provider); the operations and error translation live here once, and the client
itself (options, retries, pooling) is built by :mod:`cloudrift.core.redis`, which the
redis queue uses too. Imported only by those provider modules, so
``import cloudrift.cache`` never needs redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from typing import Any, NoReturn

from redis import exceptions as rex
from redis.credentials import CredentialProvider

from cloudrift.cache.base import Cache, Op
from cloudrift.core.exceptions import (
    CacheArgumentError,
    CacheConnectionError,
    CacheKeyNotFoundError,
    CacheResponseError,
    ConfigurationError,
)
from cloudrift.core.lifecycle import LazyClient
from cloudrift.core.redis import (
    RedisOptions,
    RedisServerOptions,
    check_tls_options,
    connection_group,
    connection_values,
    key_slot,
    open_client,
    owns_client,
    tls_files_given,
)
from cloudrift.core.secrets import Secret, redact

log = logging.getLogger("cloudrift.cache")


class TokenUnavailableError(rex.ConnectionError):
    """The token source (IAM, Entra) failed; becomes CacheConnectionError at the boundary."""


class TokenCredentialProvider(CredentialProvider):
    """Username + short-lived token (IAM / Entra) as the Redis password, minted ahead of expiry.

    ``mint`` is a coroutine returning ``(token, expires_at)`` in ``clock`` seconds; it
    must not block the loop (SDK calls that do are run in a thread by the caller).
    A token is reused until ``refresh_margin`` seconds before it expires; concurrent
    connects share one mint.
    """

    def __init__(
        self,
        username: str,
        mint: Callable[[], Awaitable[tuple[str, float]]],
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 60.0,
    ) -> None:
        self.username = username
        self._mint = mint
        self._clock = clock
        self.refresh_margin = refresh_margin
        self._token: Secret | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None
        #: How many tokens have been minted (observability and tests).
        self.mint_count = 0

    def __repr__(self) -> str:
        return f"<TokenCredentialProvider username={self.username!r} token=**********>"

    @property
    def expires_at(self) -> float:
        """When the current token expires (clock seconds; 0 before the first mint)."""
        return self._expires_at

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - self.refresh_margin

    async def token(self) -> Secret:
        """The current token, minting a new one if none is held or it is about to expire."""
        if self._fresh():
            assert self._token is not None
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._fresh():
                try:
                    value, expires_at = await self._mint()
                except Exception as exc:
                    # A redis ConnectionError, so redis-py drops the half-open socket
                    # (it would otherwise stay in the pool unauthenticated).
                    raise TokenUnavailableError(
                        f"could not get an auth token for {self.username!r}: "
                        f"{type(exc).__name__}: {redact(str(exc))}"
                    ) from exc
                self._token, self._expires_at = Secret(value), expires_at
                self.mint_count += 1
        assert self._token is not None
        return self._token

    def seconds_until_refresh(self) -> float:
        """How long the current token stays fresh."""
        return max(0.0, self._expires_at - self.refresh_margin - self._clock())

    def get_credentials(self) -> tuple[str, str]:
        # redis.asyncio only calls the async variant; a sync caller would have to
        # block the loop to mint, which is exactly what we refuse to do.
        raise RuntimeError("use get_credentials_async(): tokens are minted asynchronously")

    async def get_credentials_async(self) -> tuple[str, str]:
        return self.username, (await self.token()).reveal()


@contextmanager
def translate_errors(secrets: list[Secret], key: str | None = None) -> Iterator[None]:
    """Map redis-py errors to the cache family, with secrets removed from the text."""
    try:
        yield
    except (rex.RedisError, rex.RedisClusterException) as exc:
        _raise_translated(exc, secrets, key)
    except (TimeoutError, OSError) as exc:
        raise CacheConnectionError(
            f"cache server unreachable: {redact(str(exc), secrets)}"
        ) from exc
    except AttributeError as exc:
        if not _dropped_under_us(exc):
            raise
        raise _dropped_error(exc) from exc


def _dropped_under_us(exc: AttributeError) -> bool:
    """True for redis-py's cluster race: a topology refresh closes every connection of
    the old node map, including ones other tasks are using, whose next read or write
    then fails with ``'NoneType' object has no attribute ...`` inside redis-py."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}redis{os.sep}" in tb.tb_frame.f_code.co_filename


def _dropped_error(exc: AttributeError) -> CacheConnectionError:
    return CacheConnectionError(
        "the connection was closed while the Redis Cluster client refreshed its slot map "
        f"(failover or resharding); retry the operation ({exc})"
    )


def _raise_translated(
    exc: rex.RedisError | rex.RedisClusterException, secrets: list[Secret], key: str | None
) -> NoReturn:
    text = redact(str(exc), secrets)
    if isinstance(exc, rex.SlotNotCoveredError | rex.ClusterDownError | rex.ClusterError):
        # ClusterError: "TTL exhausted", redirects (MOVED/ASK) kept coming while slots moved.
        raise CacheConnectionError(
            f"the Redis Cluster cannot serve this key now ({text}); a failover or "
            "resharding may be in progress"
        ) from exc
    if isinstance(exc, rex.RedisClusterException):
        if isinstance(exc.__cause__, rex.RedisError):  # no startup node answered: why
            _raise_translated(exc.__cause__, secrets, key)
        if "not enabled" in text or "not covered" in text:
            raise CacheConnectionError(
                f"the Redis Cluster is not usable ({text}); with cluster=True the host must "
                "be a node (or configuration endpoint) of a cluster whose slots are all served"
            ) from exc
        raise CacheResponseError(f"Redis Cluster error: {text}") from exc
    if isinstance(exc, TokenUnavailableError):
        raise CacheConnectionError(text) from exc
    if isinstance(exc, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError):
        raise CacheConnectionError(
            f"the cache server refused the credentials ({text}); check the password, "
            "token or username"
        ) from exc
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError):
        raise CacheConnectionError(
            f"cache server unreachable or not answering in time: {text}"
        ) from exc
    if isinstance(exc, rex.ReadOnlyError):
        raise CacheResponseError(
            f"READONLY: the server is a read-only replica ({text}); a failover may be in "
            "progress, or the endpoint points at a replica"
        ) from exc
    if isinstance(exc, rex.ResponseError):
        raise CacheResponseError(f"the cache server refused the command: {text}") from exc
    raise CacheResponseError(f"cache error: {text}") from exc


# Cache._compare_and_set as one atomic script. ARGV: expect mode ("" = key absent,
# "1" = value starts with ARGV[2]), expected prefix, action (set/del/expire), value, ms.
_CAS_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur then return 0 end
elseif not cur or string.sub(cur, 1, string.len(ARGV[2])) ~= ARGV[2] then
  return 0
end
if ARGV[3] == 'set' then
  if ARGV[5] == '' then
    redis.call('SET', KEYS[1], ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  end
elseif ARGV[3] == 'del' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
"""
_CAS_SHA = hashlib.sha1(_CAS_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisBackend(Cache):
    """Cache operations over one pooled ``redis.asyncio`` client."""

    provider = "redis"

    def __init__(self, options: RedisOptions) -> None:
        super().__init__()
        self._options = options
        self._secrets = [s for s in (options.password, options.url) if s] + options.secrets
        self._client: LazyClient[Any] = LazyClient(self._build)
        self._native: Any = None
        self.backend_name = f"{self.provider} cache"

    def _location(self) -> str:
        return self._options.location

    async def _build(self, stack: AsyncExitStack) -> Any:
        client = open_client(self._options)
        if owns_client(self._options):  # a client handed in stays open: its owner closes it
            stack.push_async_callback(client.aclose)
        if self._options.cluster:
            # Read the slot map once before any traffic: concurrent first commands would
            # each rebuild it, and redis-py closes the replaced nodes' connections under
            # commands still using them.
            with translate_errors(self._secrets):
                await client.initialize()
        provider = self._options.credential_provider
        if isinstance(provider, TokenCredentialProvider):
            task = asyncio.create_task(self._refresh_tokens(provider, client))
            stack.push_async_callback(_cancel, task)
        return client

    #: How the token refresher waits (tests replace it to drive a fake clock).
    _sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    async def _refresh_tokens(self, provider: TokenCredentialProvider, client: Any) -> None:
        """Mint the next token before the current one expires, off the request path.

        New connections then authenticate with a fresh token; idle pooled connections
        (authenticated with the old one) are dropped so none outlives its token.
        """
        failures = 0
        while True:
            minted = provider.mint_count
            try:
                await provider.token()  # mints only when none is held or it is due
            except TokenUnavailableError as exc:
                failures += 1
                log.warning("cache token refresh failed (attempt %d): %s", failures, exc)
                await self._sleep(min(30.0, 2.0**failures))
                continue
            failures = 0
            if minted and provider.mint_count != minted:
                await _drop_idle_connections(client)
            await self._sleep(max(provider.seconds_until_refresh(), 1.0))

    async def _native_client(self) -> Any:
        """``await cache.native()``: the underlying ``redis.asyncio.Redis`` client."""
        return await self._client.get()

    async def _aclose(self) -> None:
        self._native = None
        try:
            await self._client.aclose()
        finally:
            for close in self._options.on_close:
                await close()

    async def _run(self, name: str, *args: Any) -> Any:
        # The hot path: no context manager and no extra await once the client exists
        # (a plain try costs nothing when nothing is raised).
        client = self._native or await self._connect()
        try:
            return await client.execute_command(name, *args)
        except (rex.RedisError, rex.RedisClusterException) as exc:
            _raise_translated(exc, self._secrets, None)
        except (TimeoutError, OSError) as exc:
            raise CacheConnectionError(
                f"cache server unreachable: {redact(str(exc), self._secrets)}"
            ) from exc
        except AttributeError as exc:
            if not _dropped_under_us(exc):
                raise
            raise _dropped_error(exc) from exc

    async def _compare_and_set(
        self, key: str, expect: bytes | None, value: bytes | None, ttl_ms: int | None
    ) -> bool:
        args = (
            b"" if expect is None else b"1",
            expect or b"",
            b"set" if value is not None else (b"del" if ttl_ms is None else b"expire"),
            value or b"",
            b"" if ttl_ms is None else str(ttl_ms).encode(),
        )
        client = self._native or await self._connect()
        try:
            try:
                result = await client.evalsha(_CAS_SHA, 1, key, *args)
            except rex.NoScriptError:  # first use on this server (or after SCRIPT FLUSH)
                result = await client.eval(_CAS_SCRIPT, 1, key, *args)
        except rex.RedisError as exc:
            _raise_translated(exc, self._secrets, key)
        except (TimeoutError, OSError) as exc:
            raise CacheConnectionError(
                f"cache server unreachable: {redact(str(exc), self._secrets)}"
            ) from exc
        return bool(result)

    async def _connect(self) -> Any:
        self._native = await self._client.get()
        return self._native

    # ------------------------------------------------------------------ hooks
    async def _set(self, key: str, value: bytes, ttl_ms: int | None, nx: bool) -> bool:
        args: list[Any] = [key, value]
        if ttl_ms is not None:
            args += ["PX", ttl_ms]
        if nx:
            args.append("NX")
        return bool(await self._run("SET", *args))

    def _get(self, key: str) -> Coroutine[Any, Any, bytes | None]:
        # Not a coroutine of its own: every time a reply arrives the task resumes through
        # each awaiting frame, so the hottest hook hands _run's coroutine straight up.
        return self._run("GET", key)

    async def _delete(self, key: str) -> bool:
        return int(await self._run("DEL", key)) > 0

    async def _exists(self, key: str) -> bool:
        return int(await self._run("EXISTS", key)) > 0

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        if self._options.cluster and _spans_slots(keys):
            # One MGET per slot (a cluster refuses keys of several slots in one command),
            # pipelined per node by redis-py; answers come back in the caller's order.
            client = self._native or await self._connect()
            with translate_errors(self._secrets):
                return list(await client.mget_nonatomic(keys))
        return list(await self._run("MGET", *keys))

    async def _mset(self, items: dict[str, bytes], ttl_ms: int | None) -> None:
        if self._options.cluster and _spans_slots(list(items)):
            # All or nothing holds per slot only: a cluster has no cross-slot transaction.
            if ttl_ms is None:  # one MSET per slot, pipelined per node by redis-py
                client = self._native or await self._connect()
                with translate_errors(self._secrets):
                    await client.mset_nonatomic(items)
                return
            groups = _by_slot(list(items))
            await asyncio.gather(
                *(self._mset({k: items[k] for k in g}, ttl_ms) for g in groups.values())
            )
            return
        if ttl_ms is None:
            flat = [part for kv in items.items() for part in kv]
            await self._run("MSET", *flat)
            return
        # MSET has no TTL: SET PX each key inside one MULTI/EXEC (still all or nothing).
        ops = [Op("set", (k, v, ttl_ms, False)) for k, v in items.items()]
        await self._execute(ops, transaction=True)

    async def _expire(self, key: str, ttl_ms: int) -> bool:
        return bool(await self._run("PEXPIRE", key, ttl_ms))

    async def _ttl(self, key: str) -> float | None:
        ms = int(await self._run("PTTL", key))
        if ms == -2:
            raise CacheKeyNotFoundError(key)
        return None if ms == -1 else ms / 1000

    async def _incr(self, key: str, amount: int) -> int:
        return int(await self._run("INCRBY", key, amount))

    async def _hset(self, key: str, field: bytes, value: bytes) -> bool:
        return int(await self._run("HSET", key, field, value)) > 0

    async def _hget(self, key: str, field: bytes) -> bytes | None:
        value: bytes | None = await self._run("HGET", key, field)
        return value

    async def _hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(await self._run("HGETALL", key))

    async def _hdel(self, key: str, field: bytes) -> bool:
        return int(await self._run("HDEL", key, field)) > 0

    async def _push(self, key: str, values: list[bytes], left: bool) -> int:
        return int(await self._run("LPUSH" if left else "RPUSH", key, *values))

    async def _lrange(self, key: str, start: int, stop: int) -> list[bytes]:
        return list(await self._run("LRANGE", key, start, stop))

    async def _execute(self, ops: list[Op], transaction: bool) -> list[Any]:
        client = self._native or await self._connect()
        if transaction and self._options.cluster and _spans_slots([op.args[0] for op in ops]):
            keys = sorted({op.args[0] for op in ops})
            raise CacheArgumentError(
                f"a pipeline on a Redis Cluster is one transaction, so its keys must share a "
                f"slot; {', '.join(map(repr, keys[:5]))} do not. Give them one hash tag, e.g. "
                "'{user:1}:name' and '{user:1}:email' (only the part in braces is hashed), "
                "or use pipeline(transaction=False) if they need not be one transaction"
            )
        with translate_errors(self._secrets):
            # On a cluster, transaction=False batches the commands per node (redis-py's
            # ClusterPipeline); transaction=True on one slot is MULTI/EXEC on its node.
            async with client.pipeline(transaction=transaction) as pipe:
                for op in ops:
                    _queue(pipe, op)
                raw = await pipe.execute()
        return [_convert(op, r) for op, r in zip(ops, raw, strict=True)]

    async def _ping(self) -> None:
        if self._options.cluster:
            # redis-py sends a bare PING to one node; a cluster is ready only when every
            # primary answers (each serves a share of the keys).
            client = self._native or await self._connect()
            with translate_errors(self._secrets):
                await client.execute_command("PING", target_nodes=client.PRIMARIES)
            return
        await self._run("PING")


def _spans_slots(keys: list[str]) -> bool:
    """True when ``keys`` are in more than one Redis Cluster slot (stops at the first
    key whose slot differs: keys spread over slots cost two slot computations)."""
    first = key_slot(keys[0])
    return any(key_slot(key) != first for key in keys[1:])


def _by_slot(keys: list[str]) -> dict[int, list[str]]:
    """``keys`` grouped by Redis Cluster slot (each group in input order, no repeats)."""
    groups: dict[int, list[str]] = {}
    for key in dict.fromkeys(keys):
        groups.setdefault(key_slot(key), []).append(key)
    return groups


async def _drop_idle_connections(client: Any) -> None:
    """Close idle pooled connections (one pool, or every node's pool on a cluster), so
    the next command reconnects and authenticates with the current token."""
    if callable(getattr(client, "get_nodes", None)):
        for node in client.get_nodes():
            await node.disconnect_free_connections()
    else:
        await client.connection_pool.disconnect(inuse_connections=False)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def _queue(pipe: Any, op: Op) -> None:
    args = op.args
    if op.name == "set":
        key, value, ttl_ms, nx = args
        pipe.set(key, value, px=ttl_ms, nx=nx)
    elif op.name == "delete":
        pipe.delete(*args)
    elif op.name == "incr":
        pipe.incrby(*args)
    elif op.name == "expire":
        pipe.pexpire(*args)
    elif op.name == "hset":
        pipe.hset(args[0], args[1], args[2])
    elif op.name == "lpush":
        pipe.lpush(*args)
    elif op.name == "rpush":
        pipe.rpush(*args)
    else:  # pragma: no cover - Pipeline only queues the names above
        raise AssertionError(op.name)


def _convert(op: Op, raw: Any) -> Any:
    if op.name in ("set", "expire"):
        return bool(raw)
    if op.name in ("delete", "hset"):
        return int(raw) > 0
    return int(raw)


def managed_options(
    where: str, host: str, default_port: int, options: RedisServerOptions
) -> RedisOptions:
    """RedisOptions for a managed Redis (TLS on by default) from its connection options."""
    values = connection_values(where, options, RedisServerOptions, ssl=True, port=None, db=0)
    port = values["port"] or default_port
    tls_given = tls_files_given(values)
    if tls_given and not values["ssl"]:
        raise ConfigurationError(
            f"{where}: {', '.join(tls_given)} given with ssl=False; drop them or keep TLS on"
        )
    scheme = "rediss" if values["ssl"] else "redis"
    return RedisOptions(
        host=host,
        port=port,
        db=values["db"],
        connection=connection_group(values),
        location=f"{scheme}://{host}:{port}/{values['db']}",
    )


__all__ = [
    "RedisBackend",
    "RedisOptions",
    "TokenCredentialProvider",
    "check_tls_options",
    "managed_options",
    "translate_errors",
]
