"""TLS material for the stand-ins: one throwaway CA (trustme) and a server certificate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA that clients must trust, and the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    ca: trustme.CA


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA and a certificate valid for 127.0.0.1 and localhost, written to disk."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = folder / "ca.pem"
    cert_path = folder / "server.pem"
    key_path = folder / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        with cert_path.open("ab") as fh:
            fh.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(key_path))
    return TLSFiles(ca_cert=ca_path, server_cert=cert_path, server_key=key_path, ca=ca)
