"""Session fixtures for docverify: the service on loopback, and the real detection and embedding
servers it calls over gRPC (the session's shared ones from tests/conftest.py, loaded once per run)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from facegate.v1 import docverify_pb2_grpc
from services.docverify.config import DocverifySettings
from services.docverify.server import DocVerifyService
from services.runtime.config import RuntimeSettings, load_settings
from tests.conftest import embedding_servicer  # noqa: F401  (test_verify.py imports it from here)
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


# ---- real downstream services (the session's shared ones, see tests/conftest.py) -----------------


@pytest.fixture(scope="session")
def embedding_model(facenet_model):
    """The session's one FaceNet (tests/conftest.py), under the name docverify's tests use."""
    return facenet_model


@pytest.fixture(scope="session")
def embedding_server(face_embedding_server):
    return face_embedding_server


@pytest.fixture(scope="session")
def detection_server(face_detection_server):
    return face_detection_server


#: Used only when no calibration for the served model is committed yet (see calibration_dir).
PROVISIONAL_THRESHOLD = 0.5


@pytest.fixture(scope="session")
def calibration_dir(tmp_path_factory):
    """The committed calibration when there is one for the model; else a provisional file in a tmp dir.

    Tests that depend on the threshold only assert outcomes far from it (same photo vs different
    people), so they hold for any sane FaceNet threshold; the threshold itself is what the
    embedding service's calibration decides.
    """
    from facegate.thresholds import (
        CALIBRATION_DIR,
        OperatingPoint,
        Thresholds,
        path_for,
        write_thresholds,
    )
    from services.runtime.model_spec import DEFAULT

    if path_for(DEFAULT.model_version, CALIBRATION_DIR).exists():
        return CALIBRATION_DIR
    directory = tmp_path_factory.mktemp("calibration")
    write_thresholds(
        Thresholds(
            model_id=DEFAULT.model_id,
            model_version=DEFAULT.model_version,
            metric="cosine",
            default_far=1e-3,
            points=(
                OperatingPoint(far=1e-3, threshold=PROVISIONAL_THRESHOLD),
                OperatingPoint(far=1e-2, threshold=PROVISIONAL_THRESHOLD - 0.1),
            ),
            calibrated_on="provisional (docverify tests)",
        ),
        directory,
    )
    return directory


@pytest.fixture(scope="session")
def docverify_server(detection_server, embedding_server, calibration_dir):
    servicer = docverify_servicer(
        detection_target=f"127.0.0.1:{detection_server.port}",
        embedding_target=f"127.0.0.1:{embedding_server.port}",
        calibration_dir=calibration_dir,
        downstream_timeout_s=60,
    )
    with serve(servicer, label="docverify") as running:
        yield running
    servicer.close()


@pytest.fixture(scope="session")
def stub(docverify_server):
    with connect(docverify_server) as ch:
        yield docverify_pb2_grpc.DocVerifyServiceStub(ch)


@pytest.fixture(scope="session")
def portraits(stub):
    """The portrait region ExtractPortrait cuts from each specimen page (decoded RGB)."""
    from facegate.v1 import common_pb2, docverify_pb2
    from tests.docverify.frames import decode, page
    from tests.docverify.specimens import SPECIMENS

    out = {}
    for spec in SPECIMENS:
        if spec["portrait_centre"]:
            reply = stub.ExtractPortrait(
                docverify_pb2.ExtractPortraitRequest(page_scan=common_pb2.Image(data=page(spec["file"])))
            )
            out[spec["file"]] = decode(reply.portrait.data)
    return out


@pytest.fixture(scope="session")
def utopia_live(portraits) -> bytes:
    """A gate-camera-like 1280x720 frame of the Utopia example person, made from a page portrait."""
    from tests.docverify.frames import live_frame

    return live_frame(portraits[LIVE_SOURCE])


#: The Utopia page whose portrait plays the live capture (it is then not used as a document).
LIVE_SOURCE = "id_cards_ICAO_Utopia_TD1.jpg"
