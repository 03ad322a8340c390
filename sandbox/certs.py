"""A throwaway certificate authority for the loopback HTTPS stand-ins.

The Azure SDK refuses bearer tokens over plain http, so the Logs Ingestion stand-in speaks TLS with a
server certificate issued here, and clients trust it with ``connection_verify=<ca.pem>``. Nothing
here is a secret: the CA exists only in the given folder and signs only loopback names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class CertPaths:
    folder: Path
    ca: Path  # the CA certificate clients trust
    server_key: Path
    server_chain: Path  # leaf first, then the CA, as uvicorn's --ssl-certfile expects

    def exist(self) -> bool:
        return self.ca.is_file() and self.server_key.is_file() and self.server_chain.is_file()


def cert_paths(folder: str | Path) -> CertPaths:
    base = Path(folder)
    return CertPaths(base, base / "ca.pem", base / "server-key.pem", base / "server-chain.pem")


def ensure_certs(folder: str | Path) -> CertPaths:
    """Create the CA and the loopback server certificate in `folder`, or reuse them if present.

    Reuse matters for the demo: a client started earlier keeps trusting the same CA file.
    """
    paths = cert_paths(folder)
    if paths.exist():
        return paths
    paths.folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*LOOPBACK_NAMES)
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.server_key))
    # Write the chain in one go so a half-written file is never mistaken for a reusable one.
    # trustme's chain stops below the root; append the CA so the file is "leaf, then chain".
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems) + ca.cert_pem.bytes()
    tmp = paths.server_chain.with_suffix(".tmp")
    tmp.write_bytes(chain)
    tmp.replace(paths.server_chain)
    return paths
