"""Certificates for the tests, made by openssl in the test (no key material in the tree)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make(folder: Path, days: int = 2, san: str = "IP:127.0.0.1,DNS:localhost") -> Path:
    """In ``folder``: a CA (ca.pem), server.pem/server.key for ``san`` (127.0.0.1 and localhost),
    and client.pem/client.key, both signed by the CA. Returns ``folder``."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days",
             str(days), "-subj", "/CN=tffreeze test CA", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=%s\n" % san)
    for name, extra in (("server", ["-extfile", "san.cnf"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + name, cwd=folder)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", name + ".pem", "-days", str(days), *extra, cwd=folder)
    return folder
