"""Session-wide fixtures: dev data paths, Redis, and the heavy shared objects (loaded once per run).

- ``facenet_model``: the one FaceNet model of the session. Every suite that needs FaceNet (embedding,
  docverify, SDK, watchlist faces) gets it from here, directly or through an embedding server built
  on it, so a run loads FaceNet once (~700 MB, seconds) instead of once per suite.
- ``face_detection_server`` / ``face_embedding_server``: a detection server and a cache-less
  embedding server on the default settings, shared by every suite that only needs "real faces in,
  templates out" (docverify, SDK, watchlist). The detection suite keeps its own server: it runs under
  smaller image limits (and ``DetectionService`` takes no injected detector to share).
- ``redis_url``: a Redis for the session, found or started the way ``make run`` does it, so the
  tests need no Redis service on the machine.

Services are imported inside the fixtures: importing this file must not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support import DOCUMENTS, FACES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: What the embedding service uses when REDIS_URL is not set (services/embedding/config.py).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def faces_dir():
    if not (FACES / "pairs.tsv").exists():
        pytest.fail(f"dev face data missing at {FACES} (expected ../shared/data/faces beside the repo)")
    return FACES


@pytest.fixture(scope="session")
def documents_dir():
    if not DOCUMENTS.exists():
        pytest.fail(f"specimen documents missing at {DOCUMENTS}")
    return DOCUMENTS


# ---- Redis ------------------------------------------------------------------------------------


def redis_answers(url: str, timeout_s: float = 1.0, **options: Any) -> bool:
    """True when a Redis at ``url`` answers PING within ``timeout_s`` (``options``: redis-py's, e.g. TLS)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, **options)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(
    *extra_args: str,
    port: int | None = None,
    tls: tuple[Path, Path, Path] | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A private ``redis-server`` on a free loopback port (or ``port``: a restart at the same
    address, empty), in memory only; stopped on exit.

    With ``tls`` (its certificate, key and CA) it serves TLS only and requires client certificates
    from that CA: the URL is rediss://, and readiness is asked with ``client_options`` (redis-py's TLS
    options of a client the CA signed). Yields (url, process): a test may stop the process itself to
    simulate an outage.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; the tests need it (e.g. `apt-get install redis-server`)")
    port = port or _free_port()
    args = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    if tls is not None:
        cert, key, ca = tls
        args[3:5] = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "yes"]
        args += ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
        url = f"rediss://127.0.0.1:{port}/0"
    proc = subprocess.Popen([*args, *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url, timeout_s=0.5, **(client_options or {})):
            if proc.poll() is not None:
                pytest.fail(
                    f"redis-server exited with code {proc.returncode} before answering on port {port}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer on port {port} within 10 s")
            time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """$REDIS_URL (default redis://127.0.0.1:6379/0) when it answers, else a private redis-server.

    The shared Redis is only read and written under per-run key prefixes; tests that stop a Redis
    start their own with ``redis_server()``.
    """
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.fail(
            f"no Redis answers at {url} and redis-server is not installed: the tests need one "
            "(install redis-server, e.g. `apt-get install redis-server`, or point REDIS_URL at a live Redis)"
        )
    with redis_server() as (private_url, _proc):
        yield private_url


# ---- FaceNet and the shared face servers ---------------------------------------------------------


@pytest.fixture(scope="session")
def facenet_model():
    """The session's one loaded FaceNet (flip fusion on, as served by default)."""
    from services.embedding.config import EmbeddingSettings
    from services.embedding.model import EmbeddingModel

    return EmbeddingModel(EmbeddingSettings().models_dir, flip_fusion=True, device="auto")


def embedding_servicer(model, **overrides: object):
    """An embedding service on an already loaded model, cache off unless ``redis_url`` is given."""
    from services.embedding.config import EmbeddingSettings
    from services.embedding.server import EmbeddingService
    from services.runtime.config import RuntimeSettings, load_settings

    values: dict[str, object] = {"port": 0, "metrics_port": -1, "redis_url": ""}
    values.update(overrides)
    return EmbeddingService(
        load_settings(EmbeddingSettings, **values), load_settings(RuntimeSettings), model=model
    )


@pytest.fixture(scope="session")
def face_embedding_server(facenet_model):
    """An embedding server on the shared model with the cache off (for suites about other services)."""
    from tests.support import serve

    servicer = embedding_servicer(facenet_model)
    with serve(servicer, label="embedding-shared") as running:
        yield running
    servicer.close()


@pytest.fixture(scope="session")
def face_detection_server():
    """A detection server on the default settings and runtime limits."""
    from services.detection.config import DetectionSettings
    from services.detection.server import DetectionService
    from services.runtime.config import RuntimeSettings, load_settings
    from tests.support import serve

    servicer = DetectionService(
        load_settings(DetectionSettings, port=0, metrics_port=-1), load_settings(RuntimeSettings)
    )
    with serve(servicer, label="detection-shared") as running:
        yield running
    servicer.close()
