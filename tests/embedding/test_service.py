"""The embedding service over real gRPC on loopback, with the real model and real Redis servers."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import redis

from facegate.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services.embedding import metrics
from services.embedding.crops import aligned_face
from services.runtime.model_spec import DEFAULT
from tests.conftest import redis_server
from tests.embedding.conftest import make_service
from tests.support import connect, serve


def embed(ch: grpc.Channel, crops: list[np.ndarray], **fields: object) -> embedding_pb2.EmbedResponse:
    stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
    return stub.Embed(
        embedding_pb2.EmbedRequest(faces=[aligned_face(c) for c in crops], **fields), timeout=60
    )


def rows(reply: embedding_pb2.EmbedResponse) -> np.ndarray:
    return np.asarray([e.values for e in reply.embeddings], dtype=np.float32)


def counter(result: str) -> float:
    return metrics.CACHE.labels(result)._value.get()


def test_model_info_describes_the_loaded_model(service):
    _servicer, running = service
    with connect(running) as ch:
        spec = embedding_pb2_grpc.EmbeddingServiceStub(ch).GetModelInfo(embedding_pb2.GetModelInfoRequest())
    assert spec.model_version == DEFAULT.model_version
    assert (spec.input_size, spec.dimension, spec.metric) == (160, 128, "cosine")
    assert spec.margin == pytest.approx(DEFAULT.margin)
    assert spec.normalization == "per_image_standardization"
    assert spec.flip_fusion is True
    assert spec.device in ("/CPU:0", "/GPU:0")


def test_embed_returns_unit_templates_with_their_version(service, model, distinct_crops):
    _servicer, running = service
    crops = distinct_crops[:3]
    with connect(running) as ch:
        reply = embed(ch, crops, model_version=DEFAULT.model_version)
    got = rows(reply)
    assert got.shape == (3, 128)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.allclose(got, model.embed(np.stack(crops)), atol=1e-4)
    assert all(
        e.model_version == DEFAULT.model_version and e.model_id == DEFAULT.model_id for e in reply.embeddings
    )
    assert len(reply.cache_hits) == 3


def test_repeat_is_served_from_the_cache(service, distinct_crops, redis_url, cache_prefix):
    _servicer, running = service
    crop = np.ascontiguousarray(distinct_crops[5][:, ::-1])  # a mirror no other test sends
    hits_before = counter("hit")
    with connect(running) as ch:
        first = embed(ch, [crop])
        second = embed(ch, [crop])
    assert list(first.cache_hits) == [False]
    assert list(second.cache_hits) == [True]
    assert np.array_equal(rows(first), rows(second))
    assert counter("hit") == hits_before + 1
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{cache_prefix}:*"))
    assert keys, "nothing was written under this run's prefix"
    ttl = client.ttl(keys[0])
    client.close()
    assert 0 < ttl <= 7 * 24 * 3600


def test_concurrent_requests_each_get_their_own_rows(model, distinct_crops):
    servicer = make_service(model, redis_url="", max_batch=16, max_wait_ms=50)
    callers = 8
    mine = [[distinct_crops[i], distinct_crops[(i + 8) % len(distinct_crops)]] for i in range(callers)]
    replies: list[np.ndarray | None] = [None] * callers
    with serve(servicer, label="embedding-batching") as running, connect(running) as ch:
        barrier = threading.Barrier(callers)

        def call(i: int) -> None:
            barrier.wait()
            replies[i] = rows(embed(ch, mine[i]))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    servicer.close()
    for i in range(callers):
        expected = model.embed(np.stack(mine[i]))
        assert replies[i] is not None
        assert np.allclose(replies[i], expected, atol=1e-4), f"caller {i} got someone else's rows"


def private_redis() -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen]]:
    """A real redis-server of this test's own on a free port (stopped by the test or at exit).

    Never the session's shared Redis: these tests stop or stall the server they are given.
    """
    return redis_server("--enable-debug-command", "local")


def test_service_answers_uncached_when_redis_stops(model, distinct_crops):
    crop_a, crop_b = distinct_crops[1], distinct_crops[2]
    with private_redis() as (url, proc):
        servicer = make_service(model, redis_url=url, cache_timeout_ms=100, cache_retry_s=0)
        with serve(servicer, label="embedding-redis-down") as running, connect(running) as ch:
            assert list(embed(ch, [crop_a]).cache_hits) == [False]
            cached = embed(ch, [crop_a])
            assert list(cached.cache_hits) == [True]
            assert metrics.CACHE_UP._value.get() == 1
            proc.terminate()
            proc.wait(10)
            errors_before = counter("error")
            after = embed(ch, [crop_a, crop_b])  # Redis is gone: served by the model
            assert list(after.cache_hits) == [False, False]
            assert np.allclose(rows(after)[0], rows(cached)[0], atol=1e-4)
            assert counter("error") > errors_before
            assert metrics.CACHE_UP._value.get() == 0
            again = embed(ch, [crop_b])
            assert np.allclose(rows(again)[0], rows(after)[1], atol=1e-4)
        servicer.close()


def test_a_slow_redis_is_bypassed_within_its_timeout(model, distinct_crops):
    crop = distinct_crops[3]
    with private_redis() as (url, _proc):
        servicer = make_service(model, redis_url=url, cache_timeout_ms=50, cache_retry_s=30)
        with serve(servicer, label="embedding-redis-slow") as running, connect(running) as ch:
            embed(ch, [crop])  # stored
            blocker = redis.Redis.from_url(url)
            sleeper = threading.Thread(target=lambda: blocker.execute_command("DEBUG", "SLEEP", "3"))
            sleeper.start()
            time.sleep(0.2)  # let DEBUG SLEEP take hold of the server
            errors_before = counter("error")
            reply = embed(ch, [crop])  # the GET times out after 50 ms: answer from the model
            assert list(reply.cache_hits) == [False]
            assert counter("error") > errors_before
            skipped_before = counter("skipped")
            embed(ch, [crop])  # within the retry window: Redis is not even asked
            assert counter("skipped") > skipped_before
            sleeper.join()
            blocker.close()
        servicer.close()


def _face(width: int = 160, height: int = 160, channels: int = 3, nbytes: int | None = None):
    size = width * height * channels if nbytes is None else nbytes
    return common_pb2.AlignedFace(rgb=b"\x80" * size, width=width, height=height, channels=channels)


BAD_INPUTS = [
    ("empty batch", [], {}, grpc.StatusCode.INVALID_ARGUMENT, "no faces"),
    ("wrong size", [_face(112, 112)], {}, grpc.StatusCode.INVALID_ARGUMENT, "faces[0]: crop is 112x112"),
    (
        "not square",
        [_face(), _face(160, 120)],
        {},
        grpc.StatusCode.INVALID_ARGUMENT,
        "faces[1]: crop is 160x120",
    ),
    ("grey crop", [_face(channels=1)], {}, grpc.StatusCode.INVALID_ARGUMENT, "channels is 1"),
    ("float32 pixels", [_face(nbytes=160 * 160 * 3 * 4)], {}, grpc.StatusCode.INVALID_ARGUMENT, "8-bit RGB"),
    ("truncated", [_face(nbytes=1000)], {}, grpc.StatusCode.INVALID_ARGUMENT, "rgb holds 1000 bytes"),
    (
        "over the limit",
        [_face()] * 9,
        {},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "9 faces in one request; the limit is 8",
    ),
    (
        "version not loaded",
        [_face()],
        {"model_version": "0" * 64},
        grpc.StatusCode.FAILED_PRECONDITION,
        "is not loaded",
    ),
]


@pytest.mark.parametrize(
    ("faces", "fields", "code", "text"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_gets_a_precise_status(service, distinct_crops, faces, fields, code, text):
    _servicer, running = service
    with connect(running) as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Embed(embedding_pb2.EmbedRequest(faces=faces, **fields), timeout=60)
        assert err.value.code() == code
        assert text in err.value.details()
        # and the service is still up for a good request
        assert len(embed(ch, [distinct_crops[0]]).embeddings) == 1
