"""The tests' local stand-ins, started outside pytest for `make bench`.

Each context manager starts one stand-in on a free 127.0.0.1 port (reusing the
fixture modules' helpers in ``tests/servers/``), records how long it took to answer in
:data:`START_TIMES`, and stops it on exit. The helpers report a start failure with
``pytest.fail`` (a BaseException); here it becomes a RuntimeError so the runner lists
the module as failed instead of dying.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
#: Stand-in name -> seconds it took to start answering (last start), for the results notes.
START_TIMES: dict[str, float] = {}
#: Stand-in name -> its process id while it runs (see :func:`cpu_seconds`).
PIDS: dict[str, int] = {}


@contextlib.contextmanager
def _fail_as_runtime_error(what: str) -> Iterator[None]:
    try:
        yield
    except pytest.fail.Exception as exc:
        raise RuntimeError(f"{what} could not start: {exc}") from None


def cpu_seconds(name: str) -> float | None:
    """CPU seconds (user + system) the running stand-in ``name`` has used so far, from
    ``/proc`` (None where that cannot tell): how much of a row's time the server spent."""
    pid = PIDS.get(name)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def started_note(*names: str) -> str:
    """``"moto started in 3 ms"`` for the notes of the rows that used these stand-ins."""
    parts = [f"{n} started in {START_TIMES[n] * 1000:.0f} ms" for n in names if n in START_TIMES]
    return "; ".join(parts)


@contextlib.contextmanager
def moto(*, fast_clock: bool = False) -> Iterator[Any]:
    """moto's server (S3, SQS, SESv2) as a child process on a free port.

    The tests run ThreadedMotoServer inside pytest; here it gets its own process so the
    server's request handling does not compete with the measured client for this
    process's GIL. ``fast_clock``: moto's clock made ``time.time()`` (the same value,
    ~10x cheaper; see ``benchmarks/_moto_fast_clock.py``).
    """
    from tests.servers._process import LOOPBACK, ManagedProcess, free_port
    from tests.servers.moto import MotoEndpoint

    with tempfile.TemporaryDirectory(prefix="bench-moto-") as tmp:
        port = free_port()
        process = ManagedProcess(
            "moto",
            [
                sys.executable,
                *([str(_HERE / "_moto_fast_clock.py")] if fast_clock else ["-m", "moto.server"]),
                *["-H", LOOPBACK, "-p", str(port)],
            ],
            port=port,
            log_dir=Path(tmp),
            timeout=30,
        )
        with _fail_as_runtime_error("moto"):
            process.start()
        START_TIMES["moto"] = process.started_in or 0.0
        if process.proc is not None:
            PIDS["moto"] = process.proc.pid
        try:
            yield MotoEndpoint(f"http://{LOOPBACK}:{port}", started_in=START_TIMES["moto"])
        finally:
            PIDS.pop("moto", None)
            process.stop()


@dataclass(frozen=True)
class AzuriteEndpoint:
    """Where Azurite's blob service listens, with its well-known development account."""

    port: int
    account: str
    account_key: str

    @property
    def account_url(self) -> str:
        """``http://127.0.0.1:P/devstoreaccount1``."""
        return f"http://127.0.0.1:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        """A connection string with the account key and the local blob endpoint."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )


def _http_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True  # any HTTP answer (403 without auth) means the service is up
    except OSError:
        return False
    return True


@contextlib.contextmanager
def azurite(*, on_disk: bool = False) -> Iterator[AzuriteEndpoint]:
    """azurite-blob on a free port: in memory, or with blobs in a temp folder (``on_disk``)."""
    from tests.servers._process import LOOPBACK, ManagedProcess, free_port
    from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY, azurite_binary

    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as tmp:
        port = free_port()
        with _fail_as_runtime_error("azurite"):
            argv = [azurite_binary(), "--blobHost", LOOPBACK, "--blobPort", str(port)]
            argv += ["--location", tmp] if on_disk else ["--inMemoryPersistence"]
            argv += ["--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
            process = ManagedProcess(
                "azurite-blob",
                argv,
                port=port,
                log_dir=Path(tmp),
                ready=lambda: _http_answers(f"http://{LOOPBACK}:{port}/{ACCOUNT}?comp=list"),
                timeout=30,
            )
            process.start()
        START_TIMES["azurite"] = process.started_in or 0.0
        try:
            yield AzuriteEndpoint(port=port, account=ACCOUNT, account_key=ACCOUNT_KEY)
        finally:
            process.stop()


@contextlib.contextmanager
def redis_server() -> Iterator[Any]:
    """A plain redis-server child process on a free port (no persistence)."""
    from tests.servers.redis import _start_redis

    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        with _fail_as_runtime_error("redis-server"):
            server = _start_redis(Path(tmp))
        START_TIMES["redis-server"] = server.process.started_in or 0.0
        try:
            yield server
        finally:
            server.stop()


def _tls_files(folder: Path) -> Any:
    """A throwaway CA and a certificate for 127.0.0.1 (what the ``tls_files`` fixture makes)."""
    import trustme

    from tests.servers.tls import TLSFiles

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = [folder / "ca.pem", folder / "server.pem", folder / "server.key"]
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return TLSFiles(ca_cert=paths[0], server_cert=paths[1], server_key=paths[2], ca=ca)


@contextlib.contextmanager
def smtp_starttls() -> Iterator[Any]:
    """aiosmtpd requiring STARTTLS and AUTH (LOGIN/PLAIN) on a free port."""
    from tests.servers.smtp import start_smtp

    # aiosmtpd warns on its own logger at every AUTH ("Session.login_data is deprecated").
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        tls = _tls_files(Path(tmp))
        with _fail_as_runtime_error("aiosmtpd"):
            server = start_smtp("starttls", tls)
        START_TIMES["aiosmtpd"] = server.started_in
        try:
            yield server
        finally:
            server.controller.stop()


@contextlib.contextmanager
def redis_cluster() -> Iterator[Any]:
    """A Redis Cluster of 3 primaries (no replicas: quicker to form) as child processes."""
    from tests.servers.redis_cluster import start_cluster

    with tempfile.TemporaryDirectory(prefix="bench-redis-cluster-") as tmp:
        with _fail_as_runtime_error("redis cluster"):
            began = time.monotonic()
            cluster = start_cluster(Path(tmp), replicas=False)
        START_TIMES["redis cluster"] = time.monotonic() - began
        try:
            yield cluster
        finally:
            cluster.stop()


@contextlib.contextmanager
def delay_proxy(endpoint_url: str, round_trip: float) -> Iterator[str]:
    """A proxy in front of ``endpoint_url`` (``http://host:port``) in its own process,
    adding ``round_trip`` seconds to every request (see ``benchmarks/_delay_proxy.py``);
    yields the proxy's URL."""
    from urllib.parse import urlsplit

    from tests.servers._process import LOOPBACK, ManagedProcess, free_port

    target = urlsplit(endpoint_url)
    script = _HERE / "_delay_proxy.py"
    with tempfile.TemporaryDirectory(prefix="bench-delay-proxy-") as tmp:
        port = free_port()
        argv = [sys.executable, str(script), str(port), target.hostname or LOOPBACK]
        process = ManagedProcess(
            "delay-proxy",
            [*argv, str(target.port), repr(round_trip)],
            port=port,
            log_dir=Path(tmp),
            timeout=30,
        )
        with _fail_as_runtime_error("delay proxy"):
            process.start()
        try:
            yield f"http://{LOOPBACK}:{port}"
        finally:
            process.stop()
