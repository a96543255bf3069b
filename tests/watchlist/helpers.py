"""Small builders for watchlist requests: random unit templates stand in for faces in contract tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facegate.v1 import common_pb2
from facegate.v1 import watchlist_pb2 as pb
from services.runtime.model_spec import DEFAULT

if TYPE_CHECKING:
    from services.watchlist.store import MilvusStore

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


def planted_near(rng: np.random.Generator, mates: np.ndarray) -> np.ndarray:
    """A probe at cosine 0.55-0.9 to each row of ``mates`` (a genuine-like match at or over the gate
    threshold), random in every other direction."""
    sim = rng.uniform(0.55, 0.9, len(mates)).astype(np.float32)
    other = rng.standard_normal(mates.shape).astype(np.float32)
    other -= (other * mates).sum(1, keepdims=True) * mates
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    p = sim[:, None] * mates + np.sqrt(1 - sim**2)[:, None] * other
    return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)


def insert_subjects(
    store: MilvusStore,
    name: str,
    data: np.ndarray,
    *,
    prefix: str = "s",
    source: str = "test",
    created: int = 0,
    chunk: int = 5000,
) -> None:
    """``len(data)`` one-template subjects (``<prefix><i>``, template ``t<i>``) of list ``name``,
    written straight into the store's collections at insert speed: no flush, no wait for the index."""
    c = store._c()
    partition = store.insert_partition(name)
    for lo in range(0, len(data), chunk):
        rows = range(lo, min(lo + chunk, len(data)))
        c.insert(
            store.templates,
            [
                {
                    "template_id": f"t{i}",
                    "watchlist": name,
                    "subject_id": f"{prefix}{i}",
                    "embedding": data[i].tolist(),
                    "model_version": VERSION,
                    "quality": 0.9,
                    "source": source,
                    "created_at": created,
                }
                for i in rows
            ],
            partition_name=partition,
        )
        c.insert(
            store.subjects,
            [
                {
                    "key": f"{name}/{prefix}{i}",
                    "watchlist": name,
                    "subject_id": f"{prefix}{i}",
                    "display_name": "",
                    "category": source,
                    "reason": "",
                    "expires_at": 0,
                    "added_by": source,
                    "external_ref": "",
                    "idempotency_key": "",
                    "created_at": created,
                    "_v": [0.0, 0.0],
                }
                for i in rows
            ],
        )


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
