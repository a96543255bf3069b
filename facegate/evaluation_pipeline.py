"""Run pairs files through the real services: detection (aligned crop) → embedding → cosine score.

`facegate eval` and `facegate calibrate` measure the system the way it runs: every image goes
through the one face pipeline (``facegate.pipeline``: Detect with the embedding model's own
geometry, then Embed with the model version pinned), over gRPC. With no targets given, both
services are started as local processes by the launcher (``facegate.launcher.local_services``).
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facegate.client import wait_until_serving
from facegate.context import call_context
from facegate.errors import FacegateError, FaceRejected, ServiceFailure
from facegate.pipeline import EVALUATION, FacePipeline, FacePolicy
from facegate.v1 import common_pb2

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
    status: str  # "ok", "no_face", or "error:<stage>:<grpc code>"


def _status(error: FacegateError) -> str:
    """Eval's error category: which stage failed, and with which status code."""
    if isinstance(error, FaceRejected):
        return "no_face"
    stage = "detect" if error.service == "detection" else "embed"
    code = error.upstream_code if isinstance(error, ServiceFailure) else error.code
    return f"error:{stage}:{code.name}"


@dataclass
class PipelineClient:
    """The face pipeline with the evaluation policy (most central face, any quality)."""

    pipeline: FacePipeline
    margin: float | None = None  # overrides the model's alignment margin (for tuning the ModelSpec)
    spec: common_pb2.ModelSpec = field(init=False)
    policy: FacePolicy = field(init=False)

    def __post_init__(self) -> None:
        with call_context(timeout_s=RPC_TIMEOUT_S):
            self.spec = self.pipeline.model_spec()
        self.policy = replace(EVALUATION, margin=self.margin)

    def embed_image(self, path: Path) -> ImageResult:
        image = common_pb2.Image(data=path.read_bytes())
        try:
            with call_context(timeout_s=RPC_TIMEOUT_S):
                template = self.pipeline.template(image, self.policy, path.name)
        except FacegateError as exc:
            return ImageResult(None, _status(exc))
        return ImageResult(template.vector, "ok")

    def embed_images(
        self, base: Path, paths: Sequence[str], workers: int = 4, progress: bool | None = None
    ) -> dict[str, ImageResult]:
        """Concurrent calls, so the embedding service's batcher can merge them.

        A progress bar goes to stderr on a terminal (``progress=None``), always (True) or never (False).
        """
        with (
            ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="eval") as pool,
            tqdm(total=len(paths), unit="image", disable=None if progress is None else not progress) as bar,
        ):
            results = {}
            for path, result in zip(
                paths, pool.map(lambda p: self.embed_image(base / p), paths), strict=True
            ):
                results[path] = result
                bar.update(1)
            return results


@contextlib.contextmanager
def connect(
    detection_target: str, embedding_target: str, margin: float | None = None
) -> Iterator[PipelineClient]:
    for target in (detection_target, embedding_target):
        if not wait_until_serving(target, timeout=60):
            raise ConnectionError(f"no SERVING service at {target}")
    with FacePipeline.connect(detection_target, embedding_target) as pipeline:
        yield PipelineClient(pipeline, margin)


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
