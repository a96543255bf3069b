"""The watchlist contract, run against Milvus Lite and a real Milvus server (the ``backend`` param)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from facegate.thresholds import OperatingPoint, Thresholds, write_thresholds
from facegate.v1 import watchlist_pb2 as pb
from services.watchlist.store import TemplateRow, now_ms
from tests.watchlist.conftest import running_service
from tests.watchlist.helpers import VERSION, create, emb, enroll, near, search, unit


def test_watchlist_lifecycle(wl, list_name):
    made = create(wl, list_name, pb.WATCHLIST_KIND_ALERT)
    assert made.model_version == VERSION and made.kind == pb.WATCHLIST_KIND_ALERT
    listed = {w.name: w for w in wl.ListWatchlists(pb.ListWatchlistsRequest()).watchlists}
    assert listed[list_name].subject_count == 0
    rng = np.random.default_rng(1)
    enroll(wl, list_name, unit(rng, 2))
    enroll(wl, list_name, unit(rng, 1))
    listed = {w.name: w for w in wl.ListWatchlists(pb.ListWatchlistsRequest()).watchlists}
    assert (listed[list_name].subject_count, listed[list_name].template_count) == (2, 3)
    gone = wl.DeleteWatchlist(pb.DeleteWatchlistRequest(name=list_name))
    assert (gone.subjects_removed, gone.templates_removed) == (2, 3)
    assert list_name not in {w.name for w in wl.ListWatchlists(pb.ListWatchlistsRequest()).watchlists}
    stats = wl.Stats(pb.StatsRequest())
    assert list_name not in {s.name for s in stats.watchlists}


def test_enrol_then_search_finds_the_subject_top1(wl, list_name):
    rng = np.random.default_rng(2)
    create(wl, list_name)
    faces = unit(rng, 40)
    ids = [
        enroll(wl, list_name, [f], display_name=f"person {i}").subject.subject_id for i, f in enumerate(faces)
    ]
    probe = near(rng, faces[7])
    result = search(wl, [probe], [list_name], threshold=0.5).results[0]
    assert result.candidates[0].subject_id == ids[7]
    assert result.candidates[0].score > 0.9
    assert result.candidates[0].info.display_name == "person 7"
    assert result.candidates[0].kind == pb.WATCHLIST_KIND_WANTED
    # Random impostors sit near cosine 0: nobody else reaches the threshold.
    assert len(result.candidates) == 1
    assert search(wl, [unit(rng)], [list_name], threshold=0.5).results[0].candidates == []


def test_one_candidate_per_subject_with_its_best_template(wl, list_name):
    rng = np.random.default_rng(3)
    create(wl, list_name)
    a = unit(rng)
    photos = [near(rng, a, 0.6), a, near(rng, a, 0.6)]
    subject = enroll(wl, list_name, photos).subject
    best = subject.templates[1].template_id
    found = search(wl, [a], [list_name], threshold=0.1, top_k=5).results[0].candidates
    assert [c.subject_id for c in found] == [subject.subject_id]
    assert found[0].template_id == best and found[0].score == pytest.approx(1.0, abs=1e-4)


def test_batched_probes_and_several_lists(wl, list_name):
    rng = np.random.default_rng(4)
    other = list_name + "_b"
    create(wl, list_name)
    create(wl, other, pb.WATCHLIST_KIND_ALLOW)
    a, b = unit(rng, 2)
    sa = enroll(wl, list_name, [a]).subject.subject_id
    sb = enroll(wl, other, [b]).subject.subject_id
    res = search(wl, [near(rng, b), near(rng, a), unit(rng)], [list_name, other])
    assert [c.subject_id for c in res.results[0].candidates] == [sb]
    assert res.results[0].candidates[0].kind == pb.WATCHLIST_KIND_ALLOW
    assert [c.subject_id for c in res.results[1].candidates] == [sa]
    assert res.results[2].candidates == []
    only_a = search(wl, [b], [list_name]).results[0].candidates
    assert only_a == []


def test_top_k_limits_candidates_best_first(wl, list_name):
    rng = np.random.default_rng(5)
    create(wl, list_name)
    centre = unit(rng)
    for _ in range(8):
        enroll(wl, list_name, [near(rng, centre, 0.4)])
    found = search(wl, [centre], [list_name], threshold=0.0, top_k=3).results[0].candidates
    assert len(found) == 3
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert len({c.subject_id for c in found}) == 3


def test_idempotent_enrolment(wl, list_name):
    rng = np.random.default_rng(6)
    create(wl, list_name)
    v = unit(rng)
    first = enroll(wl, list_name, [v], key="case-1:photo-a", display_name="A")
    again = enroll(wl, list_name, [v], key="case-1:photo-a", display_name="A")
    assert first.created and not again.created
    assert again.subject.subject_id == first.subject.subject_id
    assert [t.template_id for t in again.subject.templates] == [
        t.template_id for t in first.subject.templates
    ]
    stats = {s.name: s for s in wl.Stats(pb.StatsRequest()).watchlists}[list_name]
    assert (stats.subject_count, stats.template_count) == (1, 1)


def test_explicit_subject_id_and_duplicates(wl, list_name):
    rng = np.random.default_rng(7)
    create(wl, list_name)
    made = enroll(wl, list_name, [unit(rng)], subject_id="case-42")
    assert made.subject.subject_id == "case-42"
    with pytest.raises(Exception) as err:
        enroll(wl, list_name, [unit(rng)], subject_id="case-42")
    assert err.value.code().name == "ALREADY_EXISTS"


def test_add_templates_and_the_per_subject_limit(wl, list_name):
    rng = np.random.default_rng(8)
    create(wl, list_name)
    sid = enroll(wl, list_name, [unit(rng)]).subject.subject_id
    extra = unit(rng)
    added = wl.AddTemplates(
        pb.AddTemplatesRequest(
            watchlist=list_name, subject_id=sid, templates=[pb.TemplateInput(embedding=emb(extra))]
        )
    )
    assert len(added.template_ids) == 1
    found = search(wl, [extra], [list_name]).results[0].candidates
    assert found[0].subject_id == sid and found[0].template_id == added.template_ids[0]
    subject = wl.GetSubject(pb.GetSubjectRequest(watchlist=list_name, subject_id=sid))
    assert len(subject.templates) == 2
    too_many = [pb.TemplateInput(embedding=emb(v)) for v in unit(rng, 19)]
    for chunk in (too_many[:10], too_many[10:]):
        try:
            wl.AddTemplates(pb.AddTemplatesRequest(watchlist=list_name, subject_id=sid, templates=chunk))
        except Exception as exc:
            assert exc.code().name == "RESOURCE_EXHAUSTED"
            assert "limit is 20" in exc.details()
            break
    else:
        pytest.fail("a subject took more than 20 templates")


def test_removal_is_immediate_and_complete(wl, list_name):
    rng = np.random.default_rng(9)
    create(wl, list_name)
    v = unit(rng)
    keep = enroll(wl, list_name, [unit(rng)]).subject.subject_id
    sid = enroll(wl, list_name, [v, near(rng, v)], display_name="to erase", key="erase-me").subject.subject_id
    assert search(wl, [v], [list_name]).results[0].candidates[0].subject_id == sid
    removed = wl.RemoveSubject(pb.RemoveSubjectRequest(watchlist=list_name, subject_id=sid))
    assert removed.templates_removed == 2
    assert search(wl, [v], [list_name], threshold=-1.0, top_k=100).results[0].candidates[0].subject_id == keep
    assert sid not in {c.subject_id for c in search(wl, [v], threshold=-1.0, top_k=100).results[0].candidates}
    with pytest.raises(Exception) as err:
        wl.GetSubject(pb.GetSubjectRequest(watchlist=list_name, subject_id=sid))
    assert err.value.code().name == "NOT_FOUND"
    listed = wl.ListSubjects(pb.ListSubjectsRequest(watchlist=list_name))
    assert [s.subject_id for s in listed.subjects] == [keep]
    stats = {s.name: s for s in wl.Stats(pb.StatsRequest()).watchlists}[list_name]
    assert (stats.subject_count, stats.template_count) == (1, 1)
    with pytest.raises(Exception) as err:
        wl.RemoveSubject(pb.RemoveSubjectRequest(watchlist=list_name, subject_id=sid))
    assert err.value.code().name == "NOT_FOUND"
    # The idempotency key went with the subject: a new enrolment with it is a new subject.
    assert enroll(wl, list_name, [v], key="erase-me").created


def test_list_subjects_pages_and_filters(wl, list_name):
    rng = np.random.default_rng(10)
    create(wl, list_name)
    wanted = {enroll(wl, list_name, [unit(rng)], category="wanted").subject.subject_id for _ in range(5)}
    crew = {enroll(wl, list_name, [unit(rng)], category="crew").subject.subject_id for _ in range(2)}
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = wl.ListSubjects(pb.ListSubjectsRequest(watchlist=list_name, page_size=2, page_token=token))
        assert len(page.subjects) <= 2
        seen += [s.subject_id for s in page.subjects]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 4 and sorted(seen) == sorted(wanted | crew) and len(seen) == 7
    assert all(len(s.templates) == 1 for s in page.subjects)
    only_crew = wl.ListSubjects(pb.ListSubjectsRequest(watchlist=list_name, category="crew"))
    assert {s.subject_id for s in only_crew.subjects} == crew
    assert all(s.info.category == "crew" for s in only_crew.subjects)


def test_model_version_guard_and_reenrolment_path(wl, list_name):
    rng = np.random.default_rng(11)
    create(wl, list_name)
    v = unit(rng)
    enroll(wl, list_name, [v])
    other = "f" * 64
    with pytest.raises(Exception) as err:
        enroll(wl, list_name, [v], version=other)
    assert err.value.code().name == "FAILED_PRECONDITION" and "model version" in err.value.details()
    with pytest.raises(Exception) as err:
        search(wl, [v], [list_name], version=other)
    assert err.value.code().name == "FAILED_PRECONDITION"
    # Re-enrolment after a model change: a new list pinned to the new version, filled from the photos.
    new_list = list_name + "_v2"
    assert create(wl, new_list, version=other).model_version == other
    sid = enroll(wl, new_list, [v], version=other).subject.subject_id
    assert search(wl, [v], [new_list], version=other).results[0].candidates[0].subject_id == sid
    wl.DeleteWatchlist(pb.DeleteWatchlistRequest(name=new_list))


def test_expired_listing_is_not_returned(wl, list_name):
    rng = np.random.default_rng(12)
    create(wl, list_name)
    v = unit(rng)
    past = Timestamp(seconds=1_000_000_000)
    enroll(wl, list_name, [v], expires_at=past)
    assert search(wl, [v], [list_name]).results[0].candidates == []
    future = Timestamp(seconds=4_000_000_000)
    sid = enroll(wl, list_name, [v], expires_at=future).subject.subject_id
    assert search(wl, [v], [list_name]).results[0].candidates[0].subject_id == sid


def calibrated_list(
    backend, wl, list_name: str, seed: int, version: str, *points: OperatingPoint
) -> np.ndarray:
    """A list of model ``version``, calibrated at ``points`` (default FAR 1e-3), holding one
    enrolled template; returns that template."""
    thresholds = Thresholds(
        model_id="test", model_version=version, metric="cosine", default_far=0.001, points=points
    )
    write_thresholds(thresholds, backend.root / "calibration")
    create(wl, list_name, version=version)
    v = unit(np.random.default_rng(seed))
    enroll(wl, list_name, [v], version=version)
    return v


def test_default_threshold_comes_from_calibration_or_is_refused(backend, wl, list_name):
    version = "calibrated-test-model"
    points = OperatingPoint(far=0.001, threshold=0.8), OperatingPoint(far=0.01, threshold=0.6)
    v = calibrated_list(backend, wl, list_name, 13, version, *points)
    res = search(wl, [v], [list_name], threshold=None, version=version)
    assert res.threshold == pytest.approx(0.8) and res.target_far == pytest.approx(0.001)
    assert len(res.results[0].candidates) == 1
    explicit = search(wl, [v], [list_name], threshold=0.3, version=version)
    assert explicit.threshold == pytest.approx(0.3) and explicit.target_far == 0
    uncalibrated = list_name + "_u"
    create(wl, uncalibrated)
    with pytest.raises(Exception) as err:
        search(wl, [v], [uncalibrated], threshold=None)
    assert err.value.code().name == "FAILED_PRECONDITION" and "threshold" in err.value.details()


def test_a_search_may_pick_another_calibrated_point_and_only_a_calibrated_one(backend, wl, list_name):
    version = "calibrated-points-model"
    points = OperatingPoint(far=0.001, threshold=0.8), OperatingPoint(far=0.0001, threshold=0.9)
    v = calibrated_list(backend, wl, list_name, 17, version, *points)

    def at(**fields):
        req = pb.SearchRequest(probes=[emb(v, version)], watchlists=[list_name], **fields)
        return wl.Search(req)

    strict = at(target_far=0.0001)
    assert strict.threshold == pytest.approx(0.9) and strict.target_far == pytest.approx(0.0001)
    assert len(strict.results[0].candidates) == 1  # the same template scores 1.0
    for fields, words in [
        ({"target_far": 0.05}, "no threshold calibrated for FAR 0.05; calibrated: 0.001, 0.0001"),
        ({"target_far": 0.0}, "target_far is 0"),
        ({"target_far": 1.5}, "target_far is 1.5"),
        ({"target_far": float("nan")}, "target_far is nan"),
        ({"target_far": 0.0001, "threshold": 0.5}, "set threshold or target_far, not both"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            at(**fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details(), fields


def test_data_survives_a_service_restart(backend):
    rng = np.random.default_rng(14)
    settings = backend.settings(store="restart")
    v, w = unit(rng, 2)
    with running_service(settings) as (_svc, stub):
        create(stub, "persist")
        keep = enroll(stub, "persist", [v], display_name="kept", category="wanted", key="k-1").subject
        gone = enroll(stub, "persist", [w]).subject.subject_id
        stub.RemoveSubject(pb.RemoveSubjectRequest(watchlist="persist", subject_id=gone))
    with running_service(settings) as (_svc, stub):
        assert [x.name for x in stub.ListWatchlists(pb.ListWatchlistsRequest()).watchlists] == ["persist"]
        found = search(stub, [near(rng, v)], ["persist"]).results[0].candidates
        assert [c.subject_id for c in found] == [keep.subject_id]
        assert found[0].info.display_name == "kept"
        assert search(stub, [w], ["persist"], threshold=-1.0).results[0].candidates[0].subject_id != gone
        got = stub.GetSubject(pb.GetSubjectRequest(watchlist="persist", subject_id=keep.subject_id))
        assert got.info.category == "wanted" and len(got.templates) == 1
        replay = enroll(stub, "persist", [v], key="k-1")
        assert not replay.created and replay.subject.subject_id == keep.subject_id


def test_a_list_past_the_limit_is_refused_and_nothing_is_lost(backend):
    """Each list is a Milvus partition and a collection holds at most 4,096: one list past
    FACEGATE_WATCHLIST_MAX_WATCHLISTS gets a precise RESOURCE_EXHAUSTED, not the store's own error."""
    rng = np.random.default_rng(16)
    v = unit(rng)
    with running_service(backend.settings(store="limit", max_watchlists=2)) as (_svc, stub):
        create(stub, "first")
        create(stub, "second")
        kept = enroll(stub, "first", [v]).subject.subject_id
        with pytest.raises(grpc.RpcError) as refused:
            create(stub, "third")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2 watchlists exist" in refused.value.details()
        assert "FACEGATE_WATCHLIST_MAX_WATCHLISTS" in refused.value.details()
        names = [x.name for x in stub.ListWatchlists(pb.ListWatchlistsRequest()).watchlists]
        assert names == ["first", "second"]
        assert search(stub, [v], ["first"]).results[0].candidates[0].subject_id == kept
        stub.DeleteWatchlist(pb.DeleteWatchlistRequest(name="second"))
        assert create(stub, "third").name == "third"


def test_half_finished_enrolment_is_never_served_and_is_cleaned_up(backend):
    """Templates written by an enrolment that died before its subject row: invisible, then replaced."""
    rng = np.random.default_rng(15)
    orphan, photo = unit(rng, 2)
    settings = backend.settings(store="orphan")
    with running_service(settings) as (service, stub):
        create(stub, "orph")
        service.store.put_templates(
            [
                TemplateRow(
                    template_id="orphan-1",
                    watchlist="orph",
                    subject_id="case-9",
                    model_version=VERSION,
                    quality=1.0,
                    source="crashed import",
                    created_at=now_ms(),
                    embedding=orphan,
                )
            ]
        )
    for restart in range(2):  # the crash's restart, then one more to read back what Milvus holds
        with running_service(settings) as (_service, stub):
            assert search(stub, [orphan], ["orph"]).results[0].candidates == []
            if restart == 0:
                enroll(stub, "orph", [photo], subject_id="case-9")
            got = stub.GetSubject(pb.GetSubjectRequest(watchlist="orph", subject_id="case-9"))
            assert len(got.templates) == 1 and got.templates[0].template_id != "orphan-1"
            assert search(stub, [photo], ["orph"]).results[0].candidates[0].subject_id == "case-9"
            stats = {s.name: s for s in stub.Stats(pb.StatsRequest()).watchlists}["orph"]
            assert (stats.subject_count, stats.template_count) == (1, 1)
