"""A template enrolled a moment ago is found on the Milvus server before its HNSW index is built.

Until the index reaches the query node, Milvus 2.3 serves new rows (growing segments, sealed ones
not yet indexed) through an interim IVF index searched at nprobe 16 of 128 lists by default, whatever
the search ef: on the wheel's defaults this test's planted matches came back first in ~85 % of gate
searches. tests/watchlist/milvus_server.py (and deploy/k8s/milvus) set that nprobe to all lists, so
the interim index scores every row; this test holds the server to it, straight after enrolment.
"""

from __future__ import annotations

import numpy as np

from tests.watchlist.conftest import Backend, running_service
from tests.watchlist.helpers import DIM, VERSION, create, enroll, search, unit

#: Enough templates in one list that the server builds its interim index on the growing segment
#: (at 20,000 random templates it had not; at 50,000 it had). Inserted in one go, like a bulk import.
BULK = 50_000
CHUNK = 5_000
FRESH = 20  # wanted persons enrolled through EnrollSubject after the bulk load
PROBES = 150  # planted probes on bulk templates (plus one per fresh subject)


def planted(rng: np.random.Generator, mates: np.ndarray) -> np.ndarray:
    """A probe at cosine 0.55-0.9 to each mate: a genuine-like match at or above the gate threshold."""
    sim = rng.uniform(0.55, 0.9, len(mates)).astype(np.float32)
    other = rng.standard_normal(mates.shape).astype(np.float32)
    other -= (other * mates).sum(1, keepdims=True) * mates
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    p = sim[:, None] * mates + np.sqrt(1 - sim**2)[:, None] * other
    return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)


def bulk_insert(service, name: str, data: np.ndarray) -> None:
    """Write ``len(data)`` subjects of list ``name`` straight into the server's collections."""
    store = service.store
    c = store._c()
    for lo in range(0, len(data), CHUNK):
        rows = range(lo, min(lo + CHUNK, len(data)))
        c.insert(
            store.templates,
            [
                {
                    "template_id": f"t{i}",
                    "watchlist": name,
                    "subject_id": f"b{i}",
                    "embedding": data[i].tolist(),
                    "model_version": VERSION,
                    "quality": 0.9,
                    "source": "test",
                    "created_at": 0,
                }
                for i in rows
            ],
        )
        c.insert(
            store.subjects,
            [
                {
                    "key": f"{name}/b{i}",
                    "watchlist": name,
                    "subject_id": f"b{i}",
                    "display_name": "",
                    "category": "test",
                    "reason": "",
                    "expires_at": 0,
                    "added_by": "test",
                    "external_ref": "",
                    "idempotency_key": "",
                    "created_at": 0,
                    "_v": [0.0, 0.0],
                }
                for i in rows
            ],
        )


def test_fresh_templates_are_searched_exactly_before_the_index(milvus_uri, tmp_path, list_name):
    backend = Backend("server", tmp_path, milvus_uri)
    settings = backend.settings(store="fresh", search_mode="milvus")
    rng = np.random.default_rng(41)
    bulk = unit(rng, BULK)
    fresh = unit(rng, FRESH)
    with running_service(settings) as (service, stub):
        create(stub, list_name)
        bulk_insert(service, list_name, bulk)
        ids = [f"b{i}" for i in range(BULK)]
        for v in fresh:  # no flush, no wait for the index: searched as soon as enrolled
            ids.append(enroll(stub, list_name, [v]).subject.subject_id)
        everyone = np.vstack([bulk, fresh])
        mates = np.concatenate([rng.choice(BULK, PROBES, replace=False), np.arange(BULK, BULK + FRESH)])
        probes = planted(rng, everyone[mates])
        best = np.argmax(probes @ everyone.T, axis=1)
        assert everyone.shape == (BULK + FRESH, DIM)

        found = []
        for lo in range(0, len(probes), 10):
            res = search(stub, probes[lo : lo + 10], [list_name], threshold=-1.0, top_k=1)
            found += [r.candidates[0].subject_id if r.candidates else "" for r in res.results]
    missed = [(int(m), found[q]) for q, m in enumerate(best) if found[q] != ids[m]]
    recall = 1 - len(missed) / len(probes)
    assert recall == 1.0, f"planted recall@1 {recall:.3f} against exact search; missed {missed[:5]}"
