"""Session fixtures: the session's FaceNet, real face crops, a served embedding service on real Redis.

The crops come from the real MTCNN library (box plus margin, squared, 160 px) rather than from
the detection service, so these tests exercise the embedding service on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from services.embedding.model import EmbeddingModel
from services.embedding.server import EmbeddingService
from services.runtime.model_spec import FACENET
from tests.conftest import embedding_servicer
from tests.support import FACES, serve

PAIRS_PER_KIND = 10


@pytest.fixture(scope="session")
def model(facenet_model) -> EmbeddingModel:
    """The session's one FaceNet (tests/conftest.py), under the name the embedding tests use."""
    return facenet_model


def _pairs(kind: str, count: int) -> list[tuple[str, str]]:
    lines = (FACES / "pairs.tsv").read_text().splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return [(r[0], r[1]) for r in rows if r[2] == kind][:count]


def mtcnn_crop(detector: object, path: Path, size: int = FACENET.input_size) -> np.ndarray:
    """Most central MTCNN face, box + 20 % margin, squared, resized: a plain aligned-enough crop."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    faces = detector.detect_faces(rgb)  # type: ignore[attr-defined]
    assert faces, f"MTCNN found no face in {path.name}"
    cy, cx = rgb.shape[0] / 2, rgb.shape[1] / 2
    x, y, w, h = min(
        (f["box"] for f in faces), key=lambda b: (b[0] + b[2] / 2 - cx) ** 2 + (b[1] + b[3] / 2 - cy) ** 2
    )
    side = max(w, h) * (1 + 2 * FACENET.margin)
    mx, my = x + w / 2, y + h / 2
    box = (int(mx - side / 2), int(my - side / 2), int(mx + side / 2), int(my + side / 2))
    return np.asarray(Image.fromarray(rgb).crop(box).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="session")
def pair_crops(faces_dir: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{"genuine": [(left, right)...], "impostor": [...]} from the official dev pairs."""
    from mtcnn import MTCNN

    detector = MTCNN(device="CPU:0")
    cache: dict[str, np.ndarray] = {}

    def crop(rel: str) -> np.ndarray:
        if rel not in cache:
            cache[rel] = mtcnn_crop(detector, faces_dir / rel)
        return cache[rel]

    return {
        "genuine": [(crop(a), crop(b)) for a, b in _pairs("1", PAIRS_PER_KIND)],
        "impostor": [(crop(a), crop(b)) for a, b in _pairs("0", PAIRS_PER_KIND)],
    }


@pytest.fixture(scope="session")
def distinct_crops(pair_crops) -> list[np.ndarray]:
    """Crops of different images (no two equal), for pairing and cache tests."""
    crops = [c for kind in ("genuine", "impostor") for pair in pair_crops[kind] for c in pair]
    unique: dict[bytes, np.ndarray] = {}
    for c in crops:
        unique.setdefault(c.tobytes(), c)
    return list(unique.values())


def make_service(model: EmbeddingModel, **overrides: object) -> EmbeddingService:
    """An embedding service on ``model``; the cache is off unless ``redis_url`` is given."""
    return embedding_servicer(model, **overrides)


@pytest.fixture(scope="session")
def cache_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this run's own, removed afterwards, so tests never meet others' keys."""
    prefix = f"facegate-test:emb:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def service(model, redis_url, cache_prefix) -> Iterator[tuple[EmbeddingService, object]]:
    """The embedding service with batching and the real Redis cache, served on loopback."""
    servicer = make_service(model, redis_url=redis_url, cache_prefix=cache_prefix, max_faces_per_request=8)
    with serve(servicer, label="embedding-test") as running:
        yield servicer, running
    servicer.close()
