"""Real faces end to end: detection + embedding services produce the templates the watchlist stores.

One dev photo of each person is enrolled; another photo of the same person finds them top-1, and
photos of other people stay under the threshold. (The bulk import command goes through the
gateway: tests/gateway/test_watchlist_import.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facegate.thresholds import path_for
from facegate.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    watchlist_pb2_grpc,
)
from facegate.v1 import watchlist_pb2 as pb
from services.runtime.config import RuntimeSettings, load_settings
from services.watchlist.server import WatchlistService
from tests.support import FACES, connect, serve
from tests.watchlist.conftest import Backend
from tests.watchlist.helpers import VERSION

pytestmark = pytest.mark.slow

PEOPLE = 6  # identities enrolled
IMPOSTORS = 12  # photos of people who are not enrolled


@pytest.fixture(scope="session")
def face_services(face_detection_server, face_embedding_server) -> dict[str, object]:
    """The session's shared detection and embedding servers (tests/conftest.py): targets and servers."""
    return {
        "detection": f"127.0.0.1:{face_detection_server.port}",
        "embedding": f"127.0.0.1:{face_embedding_server.port}",
        "det": face_detection_server,
        "emb": face_embedding_server,
    }


@pytest.fixture(scope="module")
def faces_wl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    """A watchlist service on Lite with the shipped calibration: (its target, a stub)."""
    backend = Backend("lite", tmp_path_factory.mktemp("faces"))
    settings = backend.settings(calibration_dir=path_for("x").parent)
    service = WatchlistService(settings, load_settings(RuntimeSettings))
    try:
        with serve(service, label="watchlist") as running, connect(running) as channel:
            yield f"127.0.0.1:{running.port}", watchlist_pb2_grpc.WatchlistServiceStub(channel)
    finally:
        service.close()


def _people() -> tuple[list[list[Path]], list[Path]]:
    folders = sorted(p for p in (FACES / "images").iterdir() if p.is_dir())
    multi = [sorted(f.glob("*.jpg")) for f in folders if len(list(f.glob("*.jpg"))) >= 2]
    single = [next(f.glob("*.jpg")) for f in folders if len(list(f.glob("*.jpg"))) == 1]
    return multi[:PEOPLE], single[:IMPOSTORS]


def _embed(services: dict, path: Path) -> common_pb2.Embedding:
    with connect(services["det"]) as dch, connect(services["emb"]) as ech:
        found = detection_pb2_grpc.DetectionServiceStub(dch).Detect(
            detection_pb2.DetectRequest(
                image=common_pb2.Image(data=path.read_bytes()),
                options=detection_pb2.DetectionOptions(return_crops=True, subject_only=True),
            )
        )
        assert found.faces, f"no face found in {path.name}"
        subject = found.faces[0]
        reply = embedding_pb2_grpc.EmbeddingServiceStub(ech).Embed(
            embedding_pb2.EmbedRequest(faces=[subject.aligned])
        )
    return reply.embeddings[0]


def test_another_photo_finds_the_person_top1_and_impostors_stay_under(face_services, faces_wl):
    _target, stub = faces_wl
    people, impostors = _people()
    name = "faces_" + uuid.uuid4().hex[:8]
    stub.CreateWatchlist(pb.CreateWatchlistRequest(name=name, kind=pb.WATCHLIST_KIND_WANTED))
    ids = []
    for photos in people:
        e = _embed(face_services, photos[0])
        reply = stub.EnrollSubject(
            pb.EnrollSubjectRequest(
                watchlist=name, templates=[pb.TemplateInput(embedding=e, quality_score=1.0)]
            )
        )
        ids.append(reply.subject.subject_id)
    probes = [_embed(face_services, photos[1]) for photos in people]
    ranked = stub.Search(pb.SearchRequest(probes=probes, watchlists=[name], top_k=PEOPLE, threshold=-1.0))
    for sid, result in zip(ids, ranked.results, strict=True):
        assert result.candidates[0].subject_id == sid, "another photo of an enrolled person was not top-1"
    genuine = [r.candidates[0].score for r in ranked.results]
    others = [_embed(face_services, p) for p in impostors]
    best_other = stub.Search(pb.SearchRequest(probes=others, watchlists=[name], top_k=1, threshold=-1.0))
    impostor = [r.candidates[0].score for r in best_other.results]
    assert max(impostor) < min(genuine), (sorted(impostor)[-3:], sorted(genuine)[:3])
    if not path_for(VERSION).exists():
        return  # no calibration yet: the calibrated-threshold half needs `facegate calibrate`
    res = stub.Search(pb.SearchRequest(probes=probes, watchlists=[name]))
    assert res.target_far > 0, "the default threshold must come from the calibration file"
    for sid, result in zip(ids, res.results, strict=True):
        assert result.candidates and result.candidates[0].subject_id == sid
    under = stub.Search(pb.SearchRequest(probes=others, watchlists=[name]))
    assert all(not r.candidates for r in under.results), "an impostor reached the calibrated threshold"
