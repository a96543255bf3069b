"""Shared by the runtime tests: a small PKI made by openssl for 127.0.0.1 in each run."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.config import RuntimeSettings, load_settings
from tests.support import make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA and two service certificates it signed (for 127.0.0.1), plus an outsider's self-signed one."""
    return make_pki(tmp_path_factory.mktemp("pki"), ("detection", "docverify"))


def runtime_for(pki: dict[str, Path], name: str) -> RuntimeSettings:
    return load_settings(
        RuntimeSettings,
        mtls_cert_file=pki[f"{name}.pem"],
        mtls_key_file=pki[f"{name}.key"],
        mtls_ca_file=pki["ca.pem"],
    )
