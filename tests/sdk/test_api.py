"""facegate's plain-function SDK against real servers on loopback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import facegate
from tests.support import DOCUMENTS, FACES

SAME = (FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0001.jpg", FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0002.jpg")
OTHER = FACES / "images/Aaron_Tippin/Aaron_Tippin_0001.jpg"


@pytest.fixture(scope="module")
def targets(detection_server, embedding_server, docverify_server):
    return {
        "detection_target": f"127.0.0.1:{detection_server.port}",
        "embedding_target": f"127.0.0.1:{embedding_server.port}",
        "docverify": f"127.0.0.1:{docverify_server.port}",
    }


def test_detect_faces_returns_plain_faces(targets) -> None:
    faces = facegate.detect_faces(SAME[0], target=targets["detection_target"])
    assert len(faces) == 1
    face = faces[0]
    assert face.is_subject and face.confidence > 0.9
    x, y, w, h = face.box
    assert 0 <= x < 150 and 0 <= y < 150 and w > 20 and h > 20
    assert face.landmarks["left_eye"][0] < face.landmarks["right_eye"][0]
    assert not face.quality_ok and "INTER_EYE_DISTANCE" in face.quality_failed  # LFW faces are small


def test_detect_faces_accepts_arrays_and_finds_nothing_in_a_faceless_image(targets) -> None:
    rgb = np.asarray(Image.open(FACES / "no_face/skimage_coffee.png").convert("RGB"))
    assert facegate.detect_faces(rgb, target=targets["detection_target"]) == []


def test_face_embeddings_are_unit_vectors(targets) -> None:
    vectors = facegate.face_embeddings(
        SAME[0], detection_target=targets["detection_target"], embedding_target=targets["embedding_target"]
    )
    assert len(vectors) == 1 and vectors[0].shape == (128,)
    assert abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-4


def test_compare_faces_scores_same_person_above_another(targets) -> None:
    kw = {k: targets[k] for k in ("detection_target", "embedding_target")}
    same = facegate.compare_faces(*SAME, **kw)
    other = facegate.compare_faces(SAME[0], OTHER, **kw)
    assert same > 0.5 > other


def test_compare_faces_without_a_face_raises(targets) -> None:
    kw = {k: targets[k] for k in ("detection_target", "embedding_target")}
    with pytest.raises(ValueError, match="no face"):
        facegate.compare_faces(SAME[0], FACES / "no_face/skimage_coffee.png", **kw)


def test_verify_document_against_another_persons_page_is_no_match(targets) -> None:
    result = facegate.verify_document(
        SAME[0], page_scan=DOCUMENTS / "passports_Canada.png", target=targets["docverify"]
    )
    assert result.outcome in ("NO_MATCH", "INCONCLUSIVE")
    assert result.outcome != "MATCH" and result.threshold > 0 and result.model_version


def test_verify_document_needs_exactly_one_portrait_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        facegate.verify_document(SAME[0])


def test_search_watchlists_finds_an_enrolled_person_from_another_photo(targets, tmp_path) -> None:
    from facegate.thresholds import CALIBRATION_DIR
    from facegate.v1 import common_pb2, watchlist_pb2, watchlist_pb2_grpc
    from services.runtime.config import RuntimeSettings, load_settings
    from services.watchlist.config import WatchlistSettings
    from services.watchlist.server import WatchlistService
    from tests.support import connect, serve

    settings = load_settings(
        WatchlistSettings,
        MILVUS_URI=str(tmp_path / "sdk.db"),
        port=0,
        metrics_port=-1,
        calibration_dir=CALIBRATION_DIR,
    )
    service = WatchlistService(settings, load_settings(RuntimeSettings))
    kw = {k: targets[k] for k in ("detection_target", "embedding_target")}
    try:
        with serve(service, label="watchlist-sdk") as running, connect(running) as ch:
            stub = watchlist_pb2_grpc.WatchlistServiceStub(ch)
            stub.CreateWatchlist(
                watchlist_pb2.CreateWatchlistRequest(name="wanted", kind=watchlist_pb2.WATCHLIST_KIND_WANTED)
            )
            enrolled = facegate.face_embeddings(SAME[0], subject_only=True, **kw)[0]
            spec_version = (
                stub.ListWatchlists(watchlist_pb2.ListWatchlistsRequest()).watchlists[0].model_version
            )
            reply = stub.EnrollSubject(
                watchlist_pb2.EnrollSubjectRequest(
                    watchlist="wanted",
                    subject_id="s-1",
                    info=watchlist_pb2.SubjectInfo(category="wanted"),
                    templates=[
                        watchlist_pb2.TemplateInput(
                            embedding=common_pb2.Embedding(
                                values=enrolled.tolist(), model_version=spec_version
                            )
                        )
                    ],
                )
            )
            assert reply.subject.subject_id == "s-1"
            target = f"127.0.0.1:{running.port}"
            hits = facegate.search_watchlists(SAME[1], watchlists=("wanted",), watchlist_target=target, **kw)
            assert [h.subject_id for h in hits] == ["s-1"] and hits[0].score > 0.5
            assert hits[0].watchlist == "wanted" and hits[0].category == "wanted"
            assert facegate.search_watchlists(OTHER, watchlist_target=target, **kw) == []
    finally:
        service.close()


def test_client_speaks_face_recognition_locations_and_encodings(targets) -> None:
    with facegate.Client(
        detection=targets["detection_target"], embedding=targets["embedding_target"]
    ) as client:
        ((top, right, bottom, left),) = client.face_locations(SAME[0])
        (face,) = client.detect_faces(SAME[0])
        x, y, w, h = face.box
        assert (top, right, bottom, left) == (round(y), round(x + w), round(y + h), round(x))
        assert top < bottom and left < right
        encodings = client.face_encodings(SAME[0], subject_only=True)
        assert float(np.dot(encodings[0], client.subject_template(SAME[1]))) > 0.5
        assert client.compare_faces(*SAME) > 0.5


def test_sdk_errors_carry_the_grpc_code_instead_of_raw_rpc_errors(targets) -> None:
    from facegate.errors import FacegateError, InvalidArgument, ServiceFailure
    from tests.docverify.conftest import unused_target

    with pytest.raises(InvalidArgument) as err:
        facegate.detect_faces(b"definitely not an image", target=targets["detection_target"])
    assert err.value.code.name == "INVALID_ARGUMENT" and "unrecognised" in err.value.message
    assert isinstance(err.value, ValueError)
    dead = unused_target()
    with facegate.Client(detection=dead, embedding=dead, timeout=3) as client:
        with pytest.raises(FacegateError) as err:
            client.detect_faces(SAME[0])
        assert err.value.code.name == "UNAVAILABLE"
        with pytest.raises(ServiceFailure):
            client.compare_faces(*SAME)
