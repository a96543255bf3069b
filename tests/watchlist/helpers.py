"""Small builders for watchlist requests: random unit templates stand in for faces in contract tests."""

from __future__ import annotations

import numpy as np

from facegate.v1 import common_pb2
from facegate.v1 import watchlist_pb2 as pb
from services.runtime.model_spec import DEFAULT

VERSION = DEFAULT.model_version
DIM = DEFAULT.dimension


def unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    x = rng.standard_normal((n or 1, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x if n else x[0]


def near(rng: np.random.Generator, v: np.ndarray, noise: float = 0.3) -> np.ndarray:
    """Another 'photo' of the same subject: cosine ~0.95 to ``v`` for noise 0.3."""
    x = v + noise * unit(rng) * 1.0
    return (x / np.linalg.norm(x)).astype(np.float32)


def emb(v: np.ndarray | list[float], version: str = VERSION) -> common_pb2.Embedding:
    return common_pb2.Embedding(values=[float(x) for x in v], model_version=version)


def template(v: np.ndarray, version: str = VERSION, quality: float = 0.9) -> pb.TemplateInput:
    return pb.TemplateInput(embedding=emb(v, version), quality_score=quality, source="test")


def create(stub, name: str, kind=pb.WATCHLIST_KIND_WANTED, version: str = "") -> pb.Watchlist:
    return stub.CreateWatchlist(pb.CreateWatchlistRequest(name=name, kind=kind, model_version=version))


def enroll(stub, name: str, vectors, subject_id: str = "", key: str = "", version: str = VERSION, **info):
    return stub.EnrollSubject(
        pb.EnrollSubjectRequest(
            watchlist=name,
            subject_id=subject_id,
            idempotency_key=key,
            info=pb.SubjectInfo(**info),
            templates=[template(v, version) for v in vectors],
        )
    )


def search(stub, probes, lists=(), threshold: float | None = 0.5, top_k: int = 0, version: str = VERSION):
    req = pb.SearchRequest(probes=[emb(p, version) for p in probes], watchlists=list(lists), top_k=top_k)
    if threshold is not None:
        req.threshold = threshold
    return stub.Search(req)
