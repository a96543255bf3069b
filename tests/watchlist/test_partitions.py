"""Each list's templates in a partition of their own, searched by partition instead of a filter.

On the Milvus-searched backends (Lite searched by Milvus, a real server); the in-process index
never asks Milvus to search. Lists made before partitions keep their rows in ``_default`` and must
still be found, alone and next to partitioned lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from facegate.v1 import watchlist_pb2 as pb
from services.watchlist.store import DUMMY, ListRow, now_ms, partition_of
from tests.watchlist.conftest import running_service
from tests.watchlist.helpers import VERSION, create, enroll, insert_subjects, near, search, unit


@pytest.fixture
def milvus_backend(backend):
    if backend.name not in ("server", "lite_milvus_search"):
        pytest.skip("searches through Milvus only on the server and lite_milvus_search backends")
    return backend


def _partition_rows(service, name: str) -> set[str]:
    rows = service.store._c().query(
        service.store.templates,
        filter='template_id != ""',
        output_fields=["template_id"],
        partition_names=[partition_of(name)],
        consistency_level="Strong",
    )
    return {r["template_id"] for r in rows}


def test_a_list_lives_in_its_partition_and_leaves_with_it(milvus_backend):
    rng = np.random.default_rng(31)
    with running_service(milvus_backend.settings(store="part")) as (service, stub):
        c, templates = service.store._c(), service.store.templates
        create(stub, "pa")
        assert c.has_partition(templates, partition_of("pa"))
        faces = unit(rng, 3)
        made = [enroll(stub, "pa", [f]).subject for f in faces]
        assert _partition_rows(service, "pa") == {s.templates[0].template_id for s in made}
        found = search(stub, [near(rng, faces[1])], ["pa"]).results[0].candidates
        assert [x.subject_id for x in found] == [made[1].subject_id]
        stub.DeleteWatchlist(pb.DeleteWatchlistRequest(name="pa"))
        assert not c.has_partition(templates, partition_of("pa"))
        create(stub, "pa")  # the same name again: a fresh, empty partition
        assert search(stub, [faces[1]], ["pa"], threshold=0.5).results[0].candidates == []


def test_lists_from_before_partitions_are_still_found(milvus_backend):
    """A list whose rows sit in ``_default`` (made before partitions) is searched by the filter,
    alone or with a partitioned list, and never returns another list's templates."""
    rng = np.random.default_rng(32)
    settings = milvus_backend.settings(store="legacy")
    old = unit(rng, 50)
    with running_service(settings) as (service, stub):
        store = service.store
        legacy = ListRow("old", "", int(pb.WATCHLIST_KIND_WANTED), VERSION, now_ms())
        store._c().insert(store.lists, [{**legacy.__dict__, "_v": DUMMY}])  # no partition made
        insert_subjects(store, "old", old, prefix="o")
        assert not store._c().has_partition(store.templates, partition_of("old"))
        store.barrier()
    with running_service(settings) as (_service, stub):  # a restart reads the old list back
        create(stub, "new")
        fresh = unit(rng)
        sid = enroll(stub, "new", [fresh]).subject.subject_id
        probes = [near(rng, old[17]), near(rng, fresh)]
        alone = search(stub, probes, ["old"]).results
        assert [x.subject_id for x in alone[0].candidates] == ["o17"]
        assert alone[1].candidates == []
        both = search(stub, probes, ["old", "new"]).results
        assert [x.subject_id for x in both[0].candidates] == ["o17"]
        assert [(x.subject_id, x.watchlist) for x in both[1].candidates] == [(sid, "new")]
        assert search(stub, [near(rng, old[17])], ["new"]).results[0].candidates == []
        extra = unit(rng)
        late = enroll(stub, "old", [extra]).subject.subject_id  # into _default, where "old" looks
        found = search(stub, [near(rng, extra)], ["old", "new"]).results[0].candidates
        assert [x.subject_id for x in found] == [late]


def test_a_list_made_by_another_replica_is_searched_by_its_partition(milvus_backend):
    if milvus_backend.name != "server":
        pytest.skip("two replicas share one Milvus server, not one Lite file")
    rng = np.random.default_rng(33)
    settings = milvus_backend.settings(store="replicas")
    with running_service(settings) as (a, stub_a), running_service(settings) as (_b, stub_b):
        create(stub_a, "first")
        search(stub_b, [unit(rng)], ["first"])  # replica b has looked at the partitions once
        create(stub_a, "second")
        face = unit(rng)
        sid = enroll(stub_a, "second", [face]).subject.subject_id
        a.store.barrier()
        found = search(stub_b, [near(rng, face)], ["first", "second"]).results[0].candidates
        assert [(x.subject_id, x.watchlist) for x in found] == [(sid, "second")]
