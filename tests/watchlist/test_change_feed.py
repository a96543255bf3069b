"""Several replicas with in-process indexes on one Milvus server, kept in step by the change feed.

Real parts: a real Milvus 2.3.5 server, a private real ``redis-server`` per test (so a test can stop
it), and each replica a real WatchlistService on its own loopback gRPC server. What must hold: a
write acknowledged by one replica is seen by the next call on any other; a replica that cannot be
sure it saw every change reloads from Milvus; a feed that cannot be read fails the call closed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import redis

from facegate.v1 import watchlist_pb2 as pb
from services.watchlist import metrics
from services.watchlist.server import feed_key
from tests.conftest import redis_server
from tests.watchlist.conftest import Backend, running_service
from tests.watchlist.helpers import create, enroll, near, search, template, unit


@pytest.fixture(scope="module")
def server_backend(milvus_uri: str, tmp_path_factory) -> Backend:
    """One set of collections for the module (tests use their own lists): each replica pair is new."""
    return Backend("server", tmp_path_factory.mktemp("feed"), milvus_uri, prefix="tc")


@contextlib.contextmanager
def feed_pair(backend: Backend, **overrides) -> Iterator[tuple[str, subprocess.Popen, list]]:
    """A private redis-server and two replicas on one set of collections, kept in step by its feed.
    Yields (its url, the redis-server process, [(service a, stub a), (service b, stub b)])."""
    with redis_server() as (url, proc), contextlib.ExitStack() as stack:
        settings = backend.settings(store="feed", change_feed_url=url, **overrides)
        assert settings.effective_search_mode == "memory"
        yield url, proc, [stack.enter_context(running_service(settings)) for _ in range(2)]


def found(stub, probe, lists) -> list[tuple[str, str]]:
    return [(c.watchlist, c.subject_id) for c in search(stub, [probe], lists).results[0].candidates]


def reloads(reason: str) -> float:
    return metrics.FEED_RELOADS.labels(reason)._value.get()


def test_every_write_on_one_replica_is_seen_by_the_next_call_on_another(server_backend, list_name):
    rng = np.random.default_rng(51)
    with feed_pair(server_backend) as (_url, _proc, [(a, stub_a), (b, stub_b)]):
        assert a.index is not None and b.index is not None  # both search in process
        create(stub_a, list_name)
        assert list_name in [w.name for w in stub_b.ListWatchlists(pb.ListWatchlistsRequest()).watchlists]

        face, second = unit(rng), unit(rng)
        sid = enroll(stub_a, list_name, [face], display_name="x").subject.subject_id
        assert found(stub_b, near(rng, face), [list_name]) == [(list_name, sid)]
        assert stub_b.GetSubject(pb.GetSubjectRequest(watchlist=list_name, subject_id=sid)).subject_id == sid

        stub_b.AddTemplates(
            pb.AddTemplatesRequest(watchlist=list_name, subject_id=sid, templates=[template(second)])
        )
        assert found(stub_a, near(rng, second), [list_name]) == [(list_name, sid)]
        got = stub_a.GetSubject(pb.GetSubjectRequest(watchlist=list_name, subject_id=sid))
        assert len(got.templates) == 2

        stub_b.RemoveSubject(pb.RemoveSubjectRequest(watchlist=list_name, subject_id=sid))
        assert found(stub_a, face, [list_name]) == []
        assert found(stub_a, second, [list_name]) == []
        with pytest.raises(grpc.RpcError) as caught:
            stub_a.GetSubject(pb.GetSubjectRequest(watchlist=list_name, subject_id=sid))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        stub_a.DeleteWatchlist(pb.DeleteWatchlistRequest(name=list_name))
        with pytest.raises(grpc.RpcError) as caught:
            search(stub_b, [face], [list_name])
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_idempotent_enrolment_is_replayed_on_another_replica(server_backend, list_name):
    """The idempotency check of replica B sees an enrolment made through replica A."""
    rng = np.random.default_rng(52)
    with feed_pair(server_backend) as (_url, _proc, [(_a, stub_a), (_b, stub_b)]):
        create(stub_a, list_name, kind=pb.WATCHLIST_KIND_ALERT)
        face = unit(rng)
        first = enroll(stub_a, list_name, [face], key="case-7")
        again = enroll(stub_b, list_name, [face], key="case-7")
        assert first.created and not again.created
        assert again.subject.subject_id == first.subject.subject_id
        counts = {w.name: w.subject_count for w in stub_b.Stats(pb.StatsRequest()).watchlists}
        assert counts[list_name] == 1


def test_a_replica_behind_a_trimmed_feed_reloads_from_milvus(server_backend, list_name):
    rng = np.random.default_rng(53)
    with feed_pair(server_backend) as (url, _proc, [(_a, stub_a), (b, stub_b)]):
        create(stub_a, list_name)
        first = enroll(stub_a, list_name, [unit(rng)]).subject.subject_id
        search(stub_b, [unit(rng)], [list_name])  # b has caught up to here: 1 template
        held = b.index.template_count(list_name)
        faces = unit(rng, 3)
        sids = [enroll(stub_a, list_name, [f]).subject.subject_id for f in faces]
        client = redis.Redis.from_url(url)
        client.xtrim(b.replication.feed.stream, maxlen=0, approximate=False)  # b's changes are gone

        # While the reload builds, the index b serves is still the whole old one: a search
        # that got in meanwhile could not miss what b held before.
        served: list[tuple[bool, int]] = []
        rebuild = b._rebuild_index

        def watched(lists, index, memory):
            served.append((b.index is not index, b.index.template_count(list_name)))
            rebuild(lists, index, memory)
            served.append((b.index is not index, b.index.template_count(list_name)))

        b._rebuild_index = watched
        before = reloads("gap")
        for face, sid in zip(faces, sids, strict=True):
            assert found(stub_b, near(rng, face), [list_name]) == [(list_name, sid)]
        assert reloads("gap") == before + 1
        assert (held, served) == (1, [(True, 1), (True, 1)])
        assert b.index.template_count(list_name) == 4
        assert (
            stub_b.GetSubject(pb.GetSubjectRequest(watchlist=list_name, subject_id=first)).subject_id == first
        )


def test_a_feed_redis_lost_is_rebuilt_and_every_replica_reloads(server_backend, list_name):
    rng = np.random.default_rng(54)
    with feed_pair(server_backend) as (url, _proc, [(_a, stub_a), (_b, stub_b)]):
        create(stub_a, list_name)
        search(stub_b, [unit(rng)], [list_name])
        redis.Redis.from_url(url).flushall()  # what a Redis restart without persistence leaves
        face = unit(rng)
        before = reloads("epoch")
        sid = enroll(stub_a, list_name, [face]).subject.subject_id
        assert found(stub_b, near(rng, face), [list_name]) == [(list_name, sid)]
        assert reloads("epoch") == before + 2  # a before its write, b before its search


def test_feed_down_fails_closed_and_a_stored_write_reaches_the_others_later(server_backend, list_name):
    rng = np.random.default_rng(55)
    with feed_pair(server_backend, change_feed_timeout_s=0.3) as (
        url,
        redis_proc,
        [(a, stub_a), (_b, stub_b)],
    ):
        create(stub_a, list_name)
        face = unit(rng)
        search(stub_b, [face], [list_name])
        redis_proc.terminate()
        redis_proc.wait(10)

        with pytest.raises(grpc.RpcError) as caught:
            search(stub_b, [face], [list_name])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "change feed unavailable" in caught.value.details()

        # a's own sync fails first: the write is refused before anything is stored.
        with pytest.raises(grpc.RpcError) as caught:
            enroll(stub_a, list_name, [face])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        # A write whose publish fails after Milvus took it: stored, served by a, resent later.
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with redis_server(port=port):  # back, empty
            search(stub_a, [face], [list_name])  # a reloads against the new, empty feed
        a.replication.follow = False  # let the write reach Milvus with the feed down
        with pytest.raises(grpc.RpcError) as caught:
            enroll(stub_a, list_name, [face])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "stored" in caught.value.details()
        assert a.replication.pending() == 1
        a.replication.follow = True
        with redis_server(port=port):
            deadline = time.monotonic() + 10
            while a.replication.pending() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert a.replication.pending() == 0  # resent by a's background loop
            assert len(found(stub_b, near(rng, face), [list_name])) == 1
            assert len(found(stub_a, near(rng, face), [list_name])) == 1


def test_feed_key_separates_collection_sets(server_backend):
    one = server_backend.settings(store="k1", change_feed_url="redis://127.0.0.1:1/0")
    two = server_backend.settings(store="k2", change_feed_url="redis://127.0.0.1:1/0")
    assert feed_key(one) != feed_key(two)
    assert feed_key(one) == feed_key(server_backend.settings(store="k1", change_feed_url="redis://x:2/0"))
