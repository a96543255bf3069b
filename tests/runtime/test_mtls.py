"""Mutual TLS on the service-to-service hop (FACEGATE_MTLS_*): a server accepts only callers with a
certificate from the shared CA, and the runtime's channel credentials present one. Certificates
are made by openssl for 127.0.0.1 in each run (tests/runtime/conftest.py)."""

from __future__ import annotations

import grpc
import pytest

from facegate.client import open_channel
from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.runtime import mtls
from services.runtime.config import ConfigError, RuntimeSettings, load_settings
from tests.runtime.app import ImageProbe
from tests.runtime.conftest import runtime_for
from tests.runtime.test_server import jpeg
from tests.support import free_ports, serve


def detect(channel: grpc.Channel) -> detection_pb2.DetectResponse:
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=jpeg()))
    return detection_pb2_grpc.DetectionServiceStub(channel).Detect(request, timeout=5)


def test_services_talk_over_mutual_tls_and_refuse_strangers(pki) -> None:
    server_runtime = runtime_for(pki, "detection")
    with serve(
        ImageProbe(runtime=server_runtime), label="probe-mtls", **server_runtime.model_dump()
    ) as running:
        target = f"127.0.0.1:{running.port}"
        caller = mtls.channel_credentials(runtime_for(pki, "docverify"))
        with open_channel(target, credentials=caller) as ch:
            assert detect(ch).image_width == 32
        strangers = {
            "plaintext": None,
            "no client certificate": grpc.ssl_channel_credentials(pki["ca.pem"].read_bytes()),
            "certificate from another CA": grpc.ssl_channel_credentials(
                pki["ca.pem"].read_bytes(), pki["outsider.key"].read_bytes(), pki["outsider.pem"].read_bytes()
            ),
        }
        for who, credentials in strangers.items():
            with open_channel(target, credentials=credentials) as ch, pytest.raises(grpc.RpcError) as err:
                detect(ch)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, who


def test_mtls_is_all_or_nothing(pki) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(RuntimeSettings, mtls_cert_file=pki["detection.pem"])
    assert "MTLS_CERT_FILE, MTLS_KEY_FILE and MTLS_CA_FILE" in str(err.value)
    plain = load_settings(RuntimeSettings)
    assert mtls.server_credentials(plain) is None and mtls.channel_credentials(plain) is None


def test_internal_ports_speak_the_service_to_service_transport(pki) -> None:
    """A servicer's ``internal_ports`` (the gateway's peer port) get mTLS, whatever its own port
    serves: a peer with the CA's certificate is answered, a plaintext caller is not."""
    (internal,) = free_ports(1)
    server_runtime = runtime_for(pki, "detection")
    probe = ImageProbe(runtime=server_runtime)
    probe.internal_ports = (internal,)
    with serve(probe, label="probe-internal", **server_runtime.model_dump()):
        target = f"127.0.0.1:{internal}"
        caller = mtls.channel_credentials(runtime_for(pki, "docverify"))
        with open_channel(target, credentials=caller) as ch:
            assert detect(ch).image_width == 32
        with open_channel(target) as ch, pytest.raises(grpc.RpcError) as err:
            detect(ch)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    plain = ImageProbe()
    plain.internal_ports = (internal,)
    with serve(plain, label="probe-internal-plain"), open_channel(f"127.0.0.1:{internal}") as ch:
        assert detect(ch).image_width == 32  # no FACEGATE_MTLS_*: plaintext, as every internal hop
