"""Run pairs files through the real services: detection (aligned crop) → embedding → cosine score.

`facegate eval` and `facegate calibrate` measure the system the way it runs: every image goes
through the detection service's Detect (subject face, aligned to the embedding model's own
AlignmentSpec read from GetModelInfo) and then the embedding service's Embed, over gRPC. With
no targets given, both services are started in this process on loopback through the shared
runtime, which is the same code path as the deployed servers.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from facegate.client import channel, wait_until_serving
from facegate.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
)

log = logging.getLogger("facegate.eval")

REQUIRED_COLUMNS = ("left_path", "right_path", "same")
#: Score given to a pair when either image has no usable face: below any cosine, so the pair is
#: rejected (fail closed) and counts as a false reject if it was genuine.
NO_FACE_SCORE = -1.0
RPC_TIMEOUT_S = 120.0


@dataclass
class PairsFile:
    path: Path
    header: list[str]
    rows: list[dict[str, str]]

    @property
    def base(self) -> Path:
        return self.path.parent

    @property
    def same(self) -> np.ndarray:
        return np.asarray([row["same"].strip() == "1" for row in self.rows], dtype=bool)

    @property
    def folds(self) -> list[int] | None:
        if "fold" not in self.header:
            return None
        return [int(row["fold"]) for row in self.rows]

    def image_paths(self) -> list[str]:
        """Every distinct image the pairs use, in first-use order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.setdefault(row["left_path"], None)
            seen.setdefault(row["right_path"], None)
        return list(seen)


def read_pairs(path: Path) -> PairsFile:
    """Parse a pairs TSV (header ``left_path right_path same`` plus any extra columns)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        header = list(reader.fieldnames or [])
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: header lacks {', '.join(missing)} (need {' '.join(REQUIRED_COLUMNS)})")
        rows = []
        for number, row in enumerate(reader, start=2):
            if row["same"] is None or row["same"].strip() not in ("0", "1"):
                raise ValueError(f"{path}:{number}: same must be 0 or 1")
            rows.append({k: (v or "") for k, v in row.items() if k is not None})
    if not rows:
        raise ValueError(f"{path}: no pairs")
    return PairsFile(path, header, rows)


@dataclass
class ImageResult:
    vector: np.ndarray | None
    status: str  # "ok", "no_face", or "error:<grpc code>"


@dataclass
class PipelineClient:
    """Detection + embedding stubs and the crop geometry the embedding model asked for."""

    detection: detection_pb2_grpc.DetectionServiceStub
    embedding: embedding_pb2_grpc.EmbeddingServiceStub
    margin: float | None = None  # overrides the model's alignment margin (for tuning the ModelSpec)
    spec: common_pb2.ModelSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = self.embedding.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=RPC_TIMEOUT_S)
        if self.margin is None:
            self.margin = self.spec.margin

    def embed_image(self, path: Path) -> ImageResult:
        options = detection_pb2.DetectionOptions(
            return_crops=True,
            subject_only=True,
            subject_selection=detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL,
            alignment=common_pb2.AlignmentSpec(size=self.spec.input_size, margin=self.margin),
        )
        request = detection_pb2.DetectRequest(image=common_pb2.Image(data=path.read_bytes()), options=options)
        try:
            found = self.detection.Detect(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            return ImageResult(None, f"error:detect:{exc.code().name}")
        if found.subject_index < 0 or not found.faces:
            return ImageResult(None, "no_face")
        subject = found.faces[found.subject_index if found.subject_index < len(found.faces) else 0]
        if not subject.aligned.rgb:
            return ImageResult(None, "error:detect:no_crop")
        try:
            reply = self.embedding.Embed(
                embedding_pb2.EmbedRequest(faces=[subject.aligned], model_version=self.spec.model_version),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.RpcError as exc:
            return ImageResult(None, f"error:embed:{exc.code().name}")
        return ImageResult(np.asarray(reply.embeddings[0].values, dtype=np.float32), "ok")

    def embed_images(self, base: Path, paths: Sequence[str], workers: int = 4) -> dict[str, ImageResult]:
        """Concurrent calls, so the embedding service's batcher can merge them."""
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="eval") as pool:
            results = pool.map(lambda p: self.embed_image(base / p), paths)
            return dict(zip(paths, results, strict=True))


@contextlib.contextmanager
def connect(
    detection_target: str, embedding_target: str, margin: float | None = None
) -> Iterator[PipelineClient]:
    for target in (detection_target, embedding_target):
        if not wait_until_serving(target, timeout=60):
            raise ConnectionError(f"no SERVING service at {target}")
    with channel(detection_target) as det, channel(embedding_target) as emb:
        yield PipelineClient(
            detection_pb2_grpc.DetectionServiceStub(det), embedding_pb2_grpc.EmbeddingServiceStub(emb), margin
        )


@contextlib.contextmanager
def local_services(flip_fusion: bool | None = None) -> Iterator[tuple[str, str]]:
    """Start the real detection and embedding servicers on loopback; yields their targets.

    Settings come from the environment as for the deployed services (ports forced to
    ephemeral, no metrics endpoint); ``flip_fusion`` overrides the embedding setting.
    """
    # Imported here: only this path needs the services (and TensorFlow) in the CLI process.
    from services.detection.config import DetectionSettings
    from services.detection.server import DetectionService
    from services.embedding.config import EmbeddingSettings
    from services.embedding.server import EmbeddingService
    from services.runtime.config import RuntimeSettings, load_settings
    from services.runtime.server import start_server

    runtime = load_settings(RuntimeSettings)
    emb_overrides: dict[str, object] = {"port": 0, "metrics_port": -1}
    if flip_fusion is not None:
        emb_overrides["flip_fusion"] = flip_fusion
    servicers = [
        ("detection", DetectionService(load_settings(DetectionSettings, port=0, metrics_port=-1), runtime)),
        ("embedding", EmbeddingService(load_settings(EmbeddingSettings, **emb_overrides), runtime)),
    ]
    running = []
    try:
        for label, servicer in servicers:
            server = start_server(label=label, servicer=servicer, runtime=runtime, port=0, metrics_port=-1)
            running.append((server, servicer))
            servicer.warmup()
            server.set_serving(True)
        yield tuple(f"127.0.0.1:{server.port}" for server, _ in running)  # type: ignore[misc]
    finally:
        for server, servicer in reversed(running):
            server.drain(0)
            servicer.close()


@dataclass
class ScoredPairs:
    scores: np.ndarray
    statuses: list[str]  # per pair: "ok" or what went wrong, e.g. "no_face:left"
    images: dict[str, ImageResult]


def score_pairs(pairs: PairsFile, images: dict[str, ImageResult]) -> ScoredPairs:
    scores = np.empty(len(pairs.rows), dtype=np.float64)
    statuses = []
    for i, row in enumerate(pairs.rows):
        left, right = images[row["left_path"]], images[row["right_path"]]
        problems = [
            f"{r.status}:{side}" for side, r in (("left", left), ("right", right)) if r.vector is None
        ]
        if problems:
            scores[i] = NO_FACE_SCORE
            statuses.append(",".join(problems))
        else:
            assert left.vector is not None and right.vector is not None
            scores[i] = float(np.dot(left.vector, right.vector))
            statuses.append("ok")
    return ScoredPairs(scores, statuses, images)


def write_scores(path: Path, pairs: PairsFile, scored: ScoredPairs) -> None:
    """The input rows, every column passed through, plus ``score`` and ``status``."""
    columns = [c for c in pairs.header if c not in ("score", "status")] + ["score", "status"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row, score, status in zip(pairs.rows, scored.scores, scored.statuses, strict=True):
            writer.writerow({**row, "score": f"{score:.6f}", "status": status})
