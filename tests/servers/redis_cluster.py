"""A real 6-node Redis Cluster (3 primaries + 3 replicas) on loopback, for the session.

Formed from Python with ``CLUSTER ADDSLOTSRANGE`` / ``MEET`` / ``REPLICATE`` (no
``redis-cli`` needed), with ``cluster-node-timeout 1000`` so a killed primary's replica
takes over in ~2.5 s. Every node gets an explicit ``--cluster-port`` (the default,
port + 10000, can exceed 65535). Ready means ``cluster_state:ok`` on every node and
``master_link_status:up`` on every replica (a replica still in its first sync is
never promoted).

Also a TLS-only cluster of 3 primaries (``redis_cluster_tls``: clients, cluster bus and
replication over TLS, certificates from the session's trustme CA; no replicas, so it
forms in ~2 s), and helpers that move slots the way ``redis-cli --cluster reshard``
does (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_sync

from tests.servers._process import LOOPBACK, ManagedProcess, free_port, wait_until
from tests.servers.redis import redis_binary
from tests.servers.tls import TLSFiles

#: Seconds without an answer before the cluster fails a primary over to its replica.
NODE_TIMEOUT_MS = 1000
_SLOTS = 16384


@dataclass
class ClusterNode:
    """One redis-server of the cluster."""

    port: int
    cluster_port: int
    process: ManagedProcess
    node_id: str = ""
    tls: TLSFiles | None = None

    def client(self) -> redis_sync.Redis:
        """A plain client talking to this node only."""
        if self.tls is None:
            return redis_sync.Redis(host=LOOPBACK, port=self.port, socket_timeout=2)
        return redis_sync.Redis(
            host=LOOPBACK,
            port=self.port,
            socket_timeout=2,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca_cert),
        )

    def info(self, section: str) -> dict[str, object]:
        """``INFO section`` as parsed by redis-py."""
        with self.client() as c:
            return dict(c.info(section))

    def role(self) -> str:
        """``master`` or ``slave``."""
        return self.info("replication")["role"]


@dataclass
class RedisClusterServer:
    """A running cluster: its nodes, and how to reach, flush and wait for it."""

    nodes: list[ClusterNode]
    host: str = LOOPBACK

    @property
    def port(self) -> int:
        """A node to start from (clients discover the rest)."""
        return self.nodes[0].port

    @property
    def url(self) -> str:
        """``redis://`` URL of the first node."""
        return f"redis://{self.host}:{self.port}/0"

    def running(self) -> list[ClusterNode]:
        """The nodes whose process is alive."""
        return [n for n in self.nodes if n.process.running]

    def primaries(self) -> list[ClusterNode]:
        """The running nodes that are primaries right now."""
        return [n for n in self.running() if n.role() == "master"]

    def flush(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.primaries():
            with node.client() as c:
                c.flushall()

    def ready(self) -> bool:
        """Every running node says cluster_state:ok, every replica's link is up."""
        try:
            for node in self.running():
                with node.client() as c:
                    state = c.execute_command("CLUSTER", "INFO")
                text = state.decode() if isinstance(state, bytes) else str(state)
                if "cluster_state:ok" not in text:
                    return False
                repl = node.info("replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return False
        except (redis_sync.RedisError, OSError):
            return False
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until :meth:`ready`; fail the test loudly after ``timeout``."""
        wait_until(self.ready, timeout, "the Redis Cluster (cluster_state:ok, replicas synced)")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.process.stop()


def _start_node(log_dir: Path, tls: TLSFiles | None) -> ClusterNode:
    port, cport = free_port(), free_port()
    data = log_dir / str(port)
    data.mkdir()
    if tls is None:
        listen = ["--port", str(port)]
    else:  # clients, the cluster bus and replication all over TLS; no plain port
        listen = [
            "--port", "0", "--tls-port", str(port),
            "--tls-cluster", "yes", "--tls-replication", "yes",
            "--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key),
            "--tls-ca-cert-file", str(tls.ca_cert), "--tls-auth-clients", "no",
        ]  # fmt: skip
    argv = [
        redis_binary(),
        "--bind", LOOPBACK,
        *listen,
        "--cluster-enabled", "yes",
        "--cluster-port", str(cport),
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--cluster-config-file", str(data / "nodes.conf"),
        "--dir", str(data),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "no",
        "--enable-debug-command", "local",  # DEBUG SLEEP: a primary that stops answering
    ]  # fmt: skip
    name = "redis-cluster-tls" if tls else "redis-cluster"
    process = ManagedProcess(name, argv, port=port, log_dir=log_dir, timeout=20)
    node = ClusterNode(port=port, cluster_port=cport, process=process, tls=tls)
    process.start()
    with node.client() as c:
        node.node_id = c.execute_command("CLUSTER", "MYID").decode()
    return node


def start_cluster(
    log_dir: Path, *, replicas: bool = True, tls: TLSFiles | None = None
) -> RedisClusterServer:
    """Start 6 nodes, give the first 3 a third of the slots each, replicate 3 → 3 (or
    only the 3 primaries with ``replicas=False``: faster to start, no failover). With
    ``tls``, every node speaks TLS only (clients, cluster bus, replication)."""
    nodes = [_start_node(log_dir, tls) for _ in range(6 if replicas else 3)]
    cluster = RedisClusterServer(nodes)
    try:
        primaries, followers = nodes[:3], nodes[3:]
        bounds = [0, _SLOTS // 3, 2 * _SLOTS // 3, _SLOTS]
        for i, node in enumerate(primaries):
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
        with nodes[0].client() as c:
            for other in nodes[1:]:
                c.execute_command("CLUSTER", "MEET", LOOPBACK, other.port, other.cluster_port)

        def all_known() -> bool:
            for node in nodes:
                with node.client() as c:
                    known = c.execute_command("CLUSTER", "NODES").decode().splitlines()
                if len(known) < len(nodes):
                    return False
            return True

        wait_until(all_known, 20, "every Redis Cluster node knowing the others")
        for primary, replica in zip(primaries, followers, strict=False):
            with replica.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", primary.node_id)
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """One 6-node Redis Cluster for the whole session, stopped at the end."""
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_tls(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles
) -> Iterator[RedisClusterServer]:
    """A TLS-only Redis Cluster of 3 primaries (no replicas: ~2 s to form) for the session."""
    cluster = start_cluster(
        tmp_path_factory.mktemp("redis-cluster-tls"), replicas=False, tls=tls_files
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_server: RedisClusterServer) -> RedisClusterServer:
    """The session's Redis Cluster, healthy and flushed for this test."""
    redis_cluster_server.wait_ready()
    redis_cluster_server.flush()
    return redis_cluster_server


def kill_node(node: ClusterNode) -> None:
    """SIGKILL one node (no shutdown, no goodbye to the cluster): a crashed primary."""
    proc = node.process.proc
    assert proc is not None, "the node is not running"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    node.process.proc = None


def restart_node(cluster: RedisClusterServer, node: ClusterNode) -> None:
    """Start a killed node again (its nodes.conf makes it rejoin, as a replica of whoever
    took over) and wait until the whole cluster is healthy."""
    node.process.start()
    cluster.wait_ready()


def slot_owner(cluster: RedisClusterServer, slot: int) -> ClusterNode:
    """The primary serving ``slot`` right now."""
    with cluster.primaries()[0].client() as c:
        ranges = c.execute_command("CLUSTER", "SLOTS")
    for start, end, primary, *_ in ranges:
        if start <= slot <= end:
            return next(n for n in cluster.nodes if n.port == int(primary[1]))
    raise AssertionError(f"no primary serves slot {slot}")


def start_migration(cluster: RedisClusterServer, slot: int, dest: ClusterNode) -> ClusterNode:
    """Mark ``slot`` IMPORTING on ``dest`` and MIGRATING on its owner (in that order, as
    ``redis-cli --cluster reshard`` does); return the owner. Its keys stay where they are
    until MIGRATEd."""
    src = slot_owner(cluster, slot)
    with dest.client() as d, src.client() as s:
        d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
        s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dest.node_id)
    return src


def migrate_keys(src: ClusterNode, dest: ClusterNode, keys: list[bytes]) -> None:
    """MIGRATE ``keys`` (of a migrating slot) from ``src`` to ``dest``."""
    with src.client() as s:
        s.execute_command("MIGRATE", LOOPBACK, dest.port, "", 0, 5000, "KEYS", *keys)


def finish_migration(
    cluster: RedisClusterServer, slot: int, src: ClusterNode, dest: ClusterNode, pause: float
) -> None:
    """MIGRATE the rest of ``slot``'s keys a few at a time (``pause`` seconds between
    batches, so clients meet ASK redirects), then give the slot to ``dest`` on ``dest``,
    ``src`` and every other primary (clients then meet MOVED)."""
    with src.client() as s:
        while keys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 5):
            migrate_keys(src, dest, keys)
            time.sleep(pause)
    for node in [dest, src, *(n for n in cluster.primaries() if n not in (src, dest))]:
        with node.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dest.node_id)


def migrate_slots(
    cluster: RedisClusterServer, slots: list[int], dest: ClusterNode, pause: float
) -> None:
    """Move ``slots`` to ``dest`` one after the other, the way ``redis-cli --cluster
    reshard`` does (:func:`start_migration`, then :func:`finish_migration`)."""
    for slot in slots:
        src = start_migration(cluster, slot, dest)
        finish_migration(cluster, slot, src, dest, pause)
