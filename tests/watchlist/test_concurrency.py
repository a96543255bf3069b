"""Read-your-writes under concurrency: an OK Enroll is searchable, an OK Remove is never served again."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from facegate.v1 import watchlist_pb2 as pb
from tests.watchlist.helpers import create, enroll, search, unit

WRITERS = 4
PER_WRITER = 8


def test_concurrent_enrol_search_remove(wl, list_name):
    create(wl, list_name)
    rng = np.random.default_rng(21)
    faces = unit(rng, WRITERS * PER_WRITER)
    removed_at: dict[str, float] = {}
    failures: list[str] = []
    observed: list[tuple[float, set[str]]] = []
    stop = threading.Event()

    def writer(w: int) -> list[str]:
        kept = []
        for i in range(PER_WRITER):
            face = faces[w * PER_WRITER + i]
            sid = enroll(wl, list_name, [face], key=f"w{w}-{i}").subject.subject_id
            top = search(wl, [face], [list_name]).results[0].candidates
            if not top or top[0].subject_id != sid:
                failures.append(f"enrolled {sid} not found by the next search")
            if i % 2:
                wl.RemoveSubject(pb.RemoveSubjectRequest(watchlist=list_name, subject_id=sid))
                removed_at[sid] = time.monotonic()
                after = search(wl, [face], [list_name], threshold=-1.0, top_k=100).results[0].candidates
                if sid in {c.subject_id for c in after}:
                    failures.append(f"removed {sid} returned by the next search")
            else:
                kept.append(sid)
        return kept

    def reader(seed: int) -> None:
        local = np.random.default_rng(seed)
        while not stop.is_set():
            started = time.monotonic()
            probes = faces[local.integers(0, len(faces), 4)]
            res = search(wl, probes, [list_name], threshold=0.9)
            observed.append((started, {c.subject_id for r in res.results for c in r.candidates}))

    def admin() -> None:
        # Admin reads while writes land: paging and counting must never trip over a changing catalogue.
        while not stop.is_set():
            wl.ListSubjects(pb.ListSubjectsRequest(watchlist=list_name, page_size=5))
            wl.Stats(pb.StatsRequest())

    with ThreadPoolExecutor(WRITERS + 3) as pool:
        readers = [pool.submit(reader, s) for s in range(2)] + [pool.submit(admin)]
        kept = [sid for f in [pool.submit(writer, w) for w in range(WRITERS)] for sid in f.result()]
        stop.set()
        for r in readers:
            r.result()

    assert failures == []
    late = [(sid, t) for t, seen in observed for sid in seen if sid in removed_at and t > removed_at[sid]]
    assert late == [], "a search that started after an OK Remove returned the removed subject"
    assert len(observed) > 0
    listed = wl.ListSubjects(pb.ListSubjectsRequest(watchlist=list_name, page_size=500))
    assert sorted(s.subject_id for s in listed.subjects) == sorted(kept)
    stats = {s.name: s for s in wl.Stats(pb.StatsRequest()).watchlists}[list_name]
    assert (stats.subject_count, stats.template_count) == (len(kept), len(kept))
    every = search(wl, faces, [list_name], threshold=0.99).results
    hits = {c.subject_id for r in every for c in r.candidates}
    assert hits == set(kept)
