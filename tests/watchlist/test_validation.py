"""Every bad input gets its precise status, and the service and its data stay intact."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from facegate.v1 import watchlist_pb2 as pb
from tests.watchlist.helpers import DIM, create, emb, enroll, search, template, unit

RNG = np.random.default_rng(99)
GOOD = unit(RNG)
LIST = "validation_list"


def _enrol(**kw):
    base = {"watchlist": LIST, "templates": [template(GOOD)]}
    base.update(kw)
    return lambda stub: stub.EnrollSubject(pb.EnrollSubjectRequest(**base))


def _search(probes=None, **kw):
    base = {"probes": probes if probes is not None else [emb(GOOD)], "watchlists": [LIST], "threshold": 0.5}
    base.update(kw)
    return lambda stub: stub.Search(pb.SearchRequest(**base))


NAN = GOOD.copy()
NAN[5] = math.nan
INF = GOOD.copy()
INF[0] = math.inf

CASES = {
    "wrong dimension": (
        _enrol(templates=[template(GOOD[:64])]),
        "INVALID_ARGUMENT",
        "dimension 64, expected 128",
    ),
    "non-finite template": (
        _enrol(templates=[template(NAN)]),
        "INVALID_ARGUMENT",
        "non-finite value at index 5",
    ),
    "not normalised": (_enrol(templates=[template(GOOD * 3)]), "INVALID_ARGUMENT", "not L2-normalised"),
    "no templates": (_enrol(templates=[]), "INVALID_ARGUMENT", "at least one template"),
    "oversized template batch": (
        _enrol(templates=[template(v) for v in unit(RNG, 17)]),
        "RESOURCE_EXHAUSTED",
        "17 in one request, the limit is 16",
    ),
    "missing model version": (
        _enrol(templates=[pb.TemplateInput(embedding=emb(GOOD, version=""))]),
        "INVALID_ARGUMENT",
        "model_version is required",
    ),
    "quality out of range": (
        _enrol(templates=[pb.TemplateInput(embedding=emb(GOOD), quality_score=1.5)]),
        "INVALID_ARGUMENT",
        "quality_score",
    ),
    "unknown list (enrol)": (_enrol(watchlist="no_such_list"), "NOT_FOUND", "'no_such_list' does not exist"),
    "bad list name": (_enrol(watchlist="Bad-Name"), "INVALID_ARGUMENT", "not a valid watchlist name"),
    "bad subject id": (_enrol(subject_id='x" or 1==1'), "INVALID_ARGUMENT", "subject_id must be"),
    "bad idempotency key": (_enrol(idempotency_key="a b"), "INVALID_ARGUMENT", "idempotency_key"),
    "bad category": (_enrol(info=pb.SubjectInfo(category="Wanted!")), "INVALID_ARGUMENT", "category"),
    "display name too long": (
        _enrol(info=pb.SubjectInfo(display_name="x" * 300)),
        "INVALID_ARGUMENT",
        "display_name is longer than 256 bytes",
    ),
    "search wrong dimension": (_search([emb(GOOD[:100])]), "INVALID_ARGUMENT", "probes[0] has dimension 100"),
    "search non-finite": (_search([emb(GOOD), emb(INF)]), "INVALID_ARGUMENT", "probes[1] holds a non-finite"),
    "search no probes": (_search([]), "INVALID_ARGUMENT", "at least one probe"),
    "search oversized batch": (
        _search([emb(v) for v in unit(RNG, 33)]),
        "RESOURCE_EXHAUSTED",
        "33 in one request, the limit is 32",
    ),
    "top_k out of range": (_search(top_k=101), "INVALID_ARGUMENT", "top_k 101 is out of range 1..100"),
    "unknown list (search)": (_search(watchlists=[LIST, "nope"]), "NOT_FOUND", "'nope' does not exist"),
    "duplicate lists": (_search(watchlists=[LIST, LIST]), "INVALID_ARGUMENT", "more than once"),
    "threshold out of range": (_search(threshold=2.0), "INVALID_ARGUMENT", "threshold must be"),
    "threshold NaN": (_search(threshold=math.nan), "INVALID_ARGUMENT", "threshold must be"),
    "probe without version": (
        _search([emb(GOOD, version="")]),
        "INVALID_ARGUMENT",
        "needs its model_version",
    ),
    "create bad name": (
        lambda s: s.CreateWatchlist(pb.CreateWatchlistRequest(name="x" * 65, kind=pb.WATCHLIST_KIND_WANTED)),
        "INVALID_ARGUMENT",
        "not a valid watchlist name",
    ),
    "create without kind": (
        lambda s: s.CreateWatchlist(pb.CreateWatchlistRequest(name="kindless")),
        "INVALID_ARGUMENT",
        "kind must be",
    ),
    "create duplicate": (
        lambda s: s.CreateWatchlist(pb.CreateWatchlistRequest(name=LIST, kind=pb.WATCHLIST_KIND_WANTED)),
        "ALREADY_EXISTS",
        "already exists",
    ),
    "delete unknown list": (
        lambda s: s.DeleteWatchlist(pb.DeleteWatchlistRequest(name="never_made")),
        "NOT_FOUND",
        "does not exist",
    ),
    "get unknown subject": (
        lambda s: s.GetSubject(pb.GetSubjectRequest(watchlist=LIST, subject_id="ghost")),
        "NOT_FOUND",
        "'ghost' does not exist",
    ),
    "add templates to unknown subject": (
        lambda s: s.AddTemplates(
            pb.AddTemplatesRequest(watchlist=LIST, subject_id="ghost", templates=[template(GOOD)])
        ),
        "NOT_FOUND",
        "does not exist",
    ),
    "forged page token": (
        lambda s: s.ListSubjects(pb.ListSubjectsRequest(page_token="bm90LWEtdG9rZW4")),
        "INVALID_ARGUMENT",
        "page_token",
    ),
    "page size over the limit": (
        lambda s: s.ListSubjects(pb.ListSubjectsRequest(page_size=501)),
        "INVALID_ARGUMENT",
        "page_size 501",
    ),
}


@pytest.fixture(scope="module")
def seeded(wl):
    """One list with one subject that every bad request must leave untouched."""
    existing = {w.name for w in wl.ListWatchlists(pb.ListWatchlistsRequest()).watchlists}
    if LIST not in existing:
        create(wl, LIST)
        enroll(wl, LIST, [GOOD], subject_id="resident")
    return wl


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_its_status(seeded, case):
    call, code, fragment = CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        call(seeded)
    assert err.value.code().name == code, err.value.details()
    assert fragment in err.value.details()


def test_service_and_data_intact_after_bad_inputs(seeded):
    for call, _code, _fragment in CASES.values():
        with pytest.raises(grpc.RpcError):
            call(seeded)
    found = search(seeded, [GOOD], [LIST]).results[0].candidates
    assert [c.subject_id for c in found] == ["resident"]
    stats = {s.name: s for s in seeded.Stats(pb.StatsRequest()).watchlists}[LIST]
    assert (stats.subject_count, stats.template_count) == (1, 1)
    assert len(GOOD) == DIM
