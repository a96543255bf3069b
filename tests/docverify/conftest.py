"""Session fixtures for docverify: the service on loopback, and (once they exist) real detection and
embedding servers it calls over gRPC, each loaded once per test run."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from facegate.v1 import docverify_pb2_grpc
from services.docverify.config import DocverifySettings
from services.docverify.server import DocVerifyService
from services.runtime.config import RuntimeSettings, load_settings
from tests.support import connect, serve


def unused_target() -> str:
    """A loopback address nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def docverify_servicer(**overrides: object) -> DocVerifyService:
    settings = load_settings(DocverifySettings, port=0, metrics_port=-1, **overrides)
    return DocVerifyService(settings, load_settings(RuntimeSettings))


@pytest.fixture(scope="session")
def offline_stub() -> Iterator[docverify_pb2_grpc.DocVerifyServiceStub]:
    """Docverify whose downstream services are unreachable: MRZ and DG2 work, Verify fails closed."""
    target = unused_target()
    servicer = docverify_servicer(detection_target=target, embedding_target=target, downstream_timeout_s=2)
    with serve(servicer, label="docverify-offline") as running, connect(running) as ch:
        yield docverify_pb2_grpc.DocVerifyServiceStub(ch)
    servicer.close()
