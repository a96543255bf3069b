"""A stronger 1:1 score? Measure the options on the dev pairs: ``python -m tools.score_study all``.

Issue 17 asks whether alignment margin, test-time augmentation (TTA) beyond the flip,
quality-weighted scores or fusion with a second, independent model (dlib's ResNet from
``face_recognition_models``) push FaceNet's 1:1 score past 10-fold accuracy 99.6% and TAR 99.3% at
FAR 1e-3 on ``pairs.tsv``; cohort score normalisation (AS-norm) is measured beside them. This script
answers with numbers and changes nothing that ships.

Stages, each cached under ``var/score_study/`` (git-ignored) so options are compared on the same
detections and the same network outputs:

- ``detect``: every image of both pairs files through the real detection service (started locally,
  the evaluation policy: most central face), keeping its landmarks, box and its own crop at the
  model's margin (to check that the local re-alignment below reproduces it).
- ``embed``: FaceNet (the verified TFLite file the service runs) on crops re-cut from those
  landmarks by the detection service's own ``align_matrix``, once per geometry variant (margin,
  shift), each crop and its mirror kept apart as raw network outputs, so flip fusion and any TTA
  ensemble are sums of cached rows.
- ``dlib``: dlib's 128-d ResNet descriptors, on dlib's own HOG box and on the MTCNN box.
- ``specimens``: the three look-alike specimen holders (docs/accuracy-documents.md) against each
  other, as cosine and under AS-norm with the dev images as the cohort.
- ``report``: every option's 10-fold accuracy, EER, AUC, TAR at FAR 1e-3 (two ways, see
  ``far_points``) with ``facegate.evaluation``'s functions; markdown to stdout, JSON to the cache.
- ``timing``: what each option adds per kiosk decision (two faces), in ms on this CPU.

Fitted rules (fusion weight, quality weight) are chosen on the training folds only, one fit per
held-out fold; the fitted values per fold are reported so their stability can be judged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate import evaluation

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"
CACHE = REPO / "var" / "score_study"
#: Where one FaceNet file's rows and results go (``--model``); detections and dlib stay in CACHE.
OUT = CACHE / "int8"
REPORTED, TUNING = "pairs.tsv", "pairs_constructed.tsv"
#: Score of a pair with a faceless image: rejected, as in ``facegate eval`` (fail closed).
NO_FACE = -1e3
#: Variants: (margin, dx, dy), dx/dy in crop pixels. Margins scale the face about the crop centre.
MARGINS = (0.05, 0.1, 0.15, 0.2, 0.25)
SHIFT_PX = 4
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)
AS_NORM_K = (100, 200, 400)


@dataclass(frozen=True)
class Variant:
    margin: float
    dx: int = 0
    dy: int = 0

    @property
    def name(self) -> str:
        return f"m{self.margin:.2f}_x{self.dx:+d}_y{self.dy:+d}"


def shifts(margin: float, px: int = SHIFT_PX) -> list[Variant]:
    return [Variant(margin, dx, dy) for dx, dy in ((px, 0), (-px, 0), (0, px), (0, -px))]


# ---- pairs and images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairs:
    left: np.ndarray  # image index
    right: np.ndarray
    same: np.ndarray  # bool
    folds: np.ndarray


def read_rows(name: str) -> list[dict[str, str]]:
    with (FACES / name).open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def study_images() -> list[str]:
    """Every image either pairs file uses, sorted (the row order of every cache)."""
    return sorted(
        {
            r[side]
            for name in (REPORTED, TUNING)
            for r in read_rows(name)
            for side in ("left_path", "right_path")
        }
    )


def load_pairs(name: str, index: dict[str, int]) -> Pairs:
    rows = read_rows(name)
    return Pairs(
        left=np.asarray([index[r["left_path"]] for r in rows]),
        right=np.asarray([index[r["right_path"]] for r in rows]),
        same=np.asarray([r["same"] == "1" for r in rows]),
        folds=evaluation.fold_ids(len(rows)),
    )


def identity(path: str) -> str:
    return str(Path(path).parent)


# ---- stage: detect ------------------------------------------------------------------------------


def detect(paths: Sequence[str]) -> None:
    """Landmarks, boxes and the service's own crops from the real detection service."""
    from facegate.client import open_channel
    from facegate.launcher import local_services
    from facegate.pipeline import EVALUATION, subject_face
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
    from services.runtime.model_spec import FACENET

    spec = common_pb2.ModelSpec(input_size=FACENET.input_size, margin=FACENET.margin)
    options = EVALUATION.options(spec)
    n = len(paths)
    found = np.zeros(n, bool)
    landmarks = np.full((n, 5, 2), np.nan)
    boxes = np.full((n, 4), np.nan)
    confidence = np.full(n, np.nan)
    quality = np.full(n, np.nan)
    crops = np.zeros((n, spec.input_size, spec.input_size, 3), np.uint8)
    with local_services(("detection",), log_dir=CACHE / "logs") as targets:
        stub = detection_pb2_grpc.DetectionServiceStub(open_channel(targets["detection"], budget_s=120))
        for i, path in enumerate(paths):
            image = common_pb2.Image(data=(FACES / path).read_bytes())
            face = subject_face(stub.Detect(detection_pb2.DetectRequest(image=image, options=options)))
            if face is None:
                continue
            found[i] = True
            landmarks[i] = landmark_array(face)
            boxes[i] = [face.box.x, face.box.y, face.box.width, face.box.height]
            confidence[i] = face.confidence
            measures = face.quality.measures
            quality[i] = sum(m.passed for m in measures) / len(measures) if measures else 1.0
            crops[i] = np.frombuffer(face.aligned.rgb, np.uint8).reshape(crops.shape[1:])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        CACHE / "detections.npz",
        paths=np.asarray(paths),
        found=found,
        landmarks=landmarks,
        boxes=boxes,
        confidence=confidence,
        quality=quality,
        crops=crops,
    )
    print(f"detect: {found.sum()} of {n} images with a face")


def landmark_array(face: Any) -> np.ndarray:
    """A DetectedFace's five landmarks as a 5 x 2 array (eyes, nose, mouth corners)."""
    lm = face.landmarks
    points = (lm.left_eye, lm.right_eye, lm.nose, lm.mouth_left, lm.mouth_right)
    return np.array([[p.x, p.y] for p in points])


def load_detections(paths: Sequence[str]) -> dict[str, np.ndarray]:
    data = dict(np.load(CACHE / "detections.npz"))
    if list(data["paths"]) != list(paths):
        raise SystemExit("var/score_study/detections.npz is for other images; run the detect stage again")
    return data


def read_rgb(path: str) -> np.ndarray:
    from services.runtime.images import decode_image

    return decode_image((FACES / path).read_bytes(), max_bytes=1 << 26, max_pixels=1 << 26)


# ---- stage: embed -------------------------------------------------------------------------------


def variant_crop(rgb: np.ndarray, landmarks: np.ndarray, variant: Variant, size: int = 160) -> np.ndarray:
    """The detection service's aligned crop, moved by (dx, dy) crop pixels for TTA.

    Unshifted, it is exactly ``align_face`` (which the service runs); shifted, the same warp with
    the translation added (faces here are never the 2x-larger-than-crop case that align_face
    pre-shrinks, so the plain warp is the same arithmetic).
    """
    import cv2

    from services.detection.alignment import align_face, align_matrix

    if variant.dx == 0 and variant.dy == 0:
        return align_face(rgb, landmarks, size, variant.margin)
    matrix = align_matrix(landmarks, size, variant.margin)
    matrix[:, 2] += (variant.dx, variant.dy)
    crop = cv2.warpAffine(
        np.ascontiguousarray(rgb), matrix, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )  # fmt: skip
    return np.ascontiguousarray(crop, dtype=np.uint8)


def standardise(crops: np.ndarray) -> np.ndarray:
    """FaceNet's per-image standardisation, as ``EmbeddingModel._embed_lite`` does it."""
    x = crops.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.maximum(std, np.float32(1.0 / np.sqrt(float(x[0].size))))


class FaceNetRaw:
    """The shipped TFLite FaceNet (float32, or int8 when ``OUT`` says so), giving raw (pre-L2) rows
    for a crop and its mirror separately."""

    def __init__(self, threads: int = 2) -> None:
        from services.embedding.config import EmbeddingSettings
        from services.embedding.facenet import load_tflite
        from services.embedding.tflite import TfliteNet
        from services.runtime.model_spec import FACENET

        blob, _ = load_tflite(EmbeddingSettings().models_dir, FACENET.model_version, int8=OUT.name == "int8")
        self.net = TfliteNet(blob, threads=threads)

    def __call__(self, crops: np.ndarray, batch: int = 32) -> np.ndarray:
        """N x 2 x 128: [:, 0] the crop, [:, 1] its mirror."""
        out = []
        for start in range(0, len(crops), batch):
            x = standardise(crops[start : start + batch])
            both = self.net(np.concatenate([x, x[:, :, ::-1]], axis=0))
            out.append(np.stack([both[: len(x)], both[len(x) :]], axis=1))
        return np.concatenate(out).astype(np.float32)


def embed(paths: Sequence[str], variants: Sequence[Variant]) -> None:
    det = load_detections(paths)
    OUT.mkdir(parents=True, exist_ok=True)
    todo = [v for v in variants if not (OUT / f"facenet_{v.name}.npy").exists()]
    if not todo:
        return
    net = FaceNetRaw()
    images = {i: read_rgb(p) for i, p in enumerate(paths) if det["found"][i]}
    for variant in todo:
        started = time.perf_counter()
        rows = np.zeros((len(paths), 2, 128), np.float32)
        idx = sorted(images)
        crops = np.stack([variant_crop(images[i], det["landmarks"][i], variant) for i in idx])
        rows[idx] = net(crops)
        np.save(OUT / f"facenet_{variant.name}.npy", rows)
        print(f"embed {variant.name}: {len(idx)} faces in {time.perf_counter() - started:.0f} s")
    service = OUT / "facenet_service_crops.npy"
    if not service.exists():
        rows = np.zeros((len(paths), 2, 128), np.float32)
        idx = np.flatnonzero(det["found"])
        rows[idx] = net(det["crops"][idx])
        np.save(service, rows)


def facenet_raw(name: str) -> np.ndarray:
    return np.load(OUT / f"facenet_{name}.npy")


def check(paths: Sequence[str], sample: int = 16) -> dict[str, float]:
    """That this study measures what the services run: the local re-alignment against detection's
    own crops, and the cached-row flip fusion against the embedding service's model class."""
    from services.embedding.config import EmbeddingSettings
    from services.embedding.model import EmbeddingModel

    det = load_detections(paths)
    idx = np.flatnonzero(det["found"])
    diffs = np.array(
        [
            np.abs(
                variant_crop(read_rgb(paths[i]), det["landmarks"][i], Variant(0.2)).astype(int)
                - det["crops"][i]
            ).max()
            for i in idx
        ]
    )
    crops = det["crops"][idx[:sample]]
    model = EmbeddingModel(
        EmbeddingSettings().models_dir,
        flip_fusion=True,
        runtime="tflite-int8" if OUT.name == "int8" else "tflite",
    )
    cos = np.sum(model.embed(crops) * fused_template([FaceNetRaw()(crops)]), axis=1)
    out = {
        "crops_identical": float(np.mean(diffs == 0)),
        "crop_max_abs_diff": int(diffs.max()),
        "service_vs_study_min_cosine": float(cos.min()),
    }
    print(json.dumps(out))
    (OUT / "check.json").write_text(json.dumps(out))
    return out


# ---- stage: dlib --------------------------------------------------------------------------------


def most_central(rects: Any, width: int, height: int) -> Any:
    centre = np.array([width / 2, height / 2])
    return min(rects, key=lambda r: float(np.hypot(*(np.array([r.center().x, r.center().y]) - centre))))


def dlib_models() -> tuple[Any, Any, Any]:
    import warnings

    import dlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
        import face_recognition_models as frm

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
    )


def mtcnn_rect(box: np.ndarray) -> Any:
    import dlib

    x, y, w, h = box
    return dlib.rectangle(round(float(x)), round(float(y)), round(float(x + w)), round(float(y + h)))


def dlib_descriptors(paths: Sequence[str]) -> None:
    """128-d dlib ResNet descriptors: box from dlib's HOG (its own pipeline; MTCNN's box where HOG
    finds no face) or from MTCNN; dlib's 5-point shape predictor and 150 px chip in both cases."""
    target = CACHE / "dlib.npz"
    if target.exists():
        return
    det = load_detections(paths)
    hog, predictor, encoder = dlib_models()
    n = len(paths)
    out = {k: np.full((n, 128), np.nan, np.float32) for k in ("hog", "mtcnn")}
    hog_found = np.zeros(n, bool)
    for i, path in enumerate(paths):
        rgb = read_rgb(path)
        rects = hog(rgb, 1)
        if len(rects):
            hog_found[i] = True
            shape = predictor(rgb, most_central(rects, rgb.shape[1], rgb.shape[0]))
            out["hog"][i] = encoder.compute_face_descriptor(rgb, shape, 0)
        if det["found"][i]:
            shape = predictor(rgb, mtcnn_rect(det["boxes"][i]))
            out["mtcnn"][i] = encoder.compute_face_descriptor(rgb, shape, 0)
            # dlib's own pipeline found nothing: use MTCNN's box (as a fused system would).
            if not hog_found[i]:
                out["hog"][i] = out["mtcnn"][i]
    np.savez_compressed(target, hog=out["hog"], mtcnn=out["mtcnn"], hog_found=hog_found)
    print(f"dlib: HOG found {hog_found.sum()} of {n}")


# ---- scores -------------------------------------------------------------------------------------


def unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def fused_template(raws: Sequence[np.ndarray], *, flip: bool = True, mode: str = "sum") -> np.ndarray:
    """One template per image from cached raw rows: flip fusion as the service does (sum, L2),
    then across TTA variants either the same raw sum ("sum") or the mean of unit rows ("mean")."""
    per_variant = [r[:, 0] + r[:, 1] if flip else r[:, 0] for r in raws]
    if mode == "sum":
        return unit(np.sum(per_variant, axis=0))
    return unit(np.mean([unit(v) for v in per_variant], axis=0))


def cosine_matrix(templates: np.ndarray) -> np.ndarray:
    return templates.astype(np.float64) @ templates.T.astype(np.float64)


def neg_distance_matrix(rows: np.ndarray) -> np.ndarray:
    """dlib's own metric (Euclidean distance, accept below 0.6) as a similarity: minus the distance."""
    sq = np.sum(rows.astype(np.float64) ** 2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * rows.astype(np.float64) @ rows.T.astype(np.float64), 0)
    return -np.sqrt(d2)


@dataclass(frozen=True)
class Scores:
    """One scoring option: a similarity for every image pair, and which images have a template."""

    matrix: np.ndarray  # n x n
    valid: np.ndarray  # n, bool

    def pairs(self, p: Pairs) -> np.ndarray:
        s = self.matrix[p.left, p.right].copy()
        s[~(self.valid[p.left] & self.valid[p.right])] = NO_FACE
        return s


def cross_identity(
    paths: Sequence[str], subset: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices of every pair of valid images in ``subset`` whose identities differ
    (the impostor cohort ``facegate calibrate`` uses)."""
    idx = np.asarray([i for i in subset if valid[i]])
    ids = np.asarray([identity(paths[i]) for i in idx])
    a, b = np.triu_indices(len(idx), k=1)
    keep = ids[a] != ids[b]
    return idx[a[keep]], idx[b[keep]]


# ---- fitted rules -------------------------------------------------------------------------------


def z_params(impostor: np.ndarray) -> tuple[float, float]:
    return float(np.mean(impostor)), float(np.std(impostor))


def pick_weight(
    make: Callable[[float], np.ndarray], same: np.ndarray, weights: Sequence[float] = tuple(WEIGHTS)
) -> float:
    """The weight whose scores give the best training accuracy; ties: the one with the largest
    margin between genuine and impostor means in impostor-sd units (d'), which is smooth."""
    best: tuple[float, float, float] | None = None
    for w in weights:
        s = make(float(w))
        ok = s > NO_FACE / 2
        acc = evaluation.accuracy_at(s, same, evaluation.best_threshold(s, same))
        g, m = s[same & ok], s[~same & ok]
        d = (g.mean() - m.mean()) / math.sqrt((g.var() + m.var()) / 2)
        key = (acc, d, float(w))
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    return best[2]


def cv_fitted(
    make: Callable[[float], np.ndarray],
    same: np.ndarray,
    folds: np.ndarray,
    weights: Sequence[float] = tuple(WEIGHTS),
) -> tuple[float, float, list[float], list[float]]:
    """10-fold accuracy of a rule with one free weight, the weight and threshold picked on the
    nine training folds each time (LFW protocol).

    Returns (mean, SEM, weight per fold, accuracy per fold).
    """
    accuracies, chosen = [], []
    for fold in np.unique(folds):
        test = folds == fold
        w = pick_weight(lambda x, test=test: make(x)[~test], same[~test], weights)
        s = make(w)
        threshold = evaluation.best_threshold(s[~test], same[~test])
        accuracies.append(evaluation.accuracy_at(s[test], same[test], threshold))
        chosen.append(w)
    acc = np.asarray(accuracies)
    return float(acc.mean()), float(acc.std(ddof=1) / math.sqrt(len(acc))), chosen, accuracies


def z_fusion(
    a: np.ndarray, b: np.ndarray, za: tuple[float, float], zb: tuple[float, float], w: float
) -> np.ndarray:
    """(1 - w) z(a) + w z(b) with each model's impostor mean/sd; NO_FACE stays NO_FACE."""
    out = (1 - w) * (a - za[0]) / za[1] + w * (b - zb[0]) / zb[1]
    out[(a <= NO_FACE / 2) | (b <= NO_FACE / 2)] = NO_FACE
    return out


def as_norm(
    matrix: np.ndarray, ids: np.ndarray, valid: np.ndarray, k: int, chunk: int = 20_000
) -> np.ndarray:
    """Adaptive symmetric score normalisation: ``s(a, b)`` minus each side's mean over its ``k``
    highest cohort scores, over their sd, averaged for the two sides.

    The cohort of a pair is every valid image of a third identity: for ``(a, b)`` each side's
    cohort leaves out the images of both ``a``'s and ``b``'s identities, so an impostor pair never
    normalises by its own partner and a genuine pair never by its own person. A face that scores
    high against everyone (a "hub": a small, plain portrait; a common look) is judged against the
    faces most like it, not against the average face.
    """
    n = len(ids)
    codes = np.unique(ids, return_inverse=True)[1]
    per_id = int(np.bincount(codes[valid]).max()) if valid.any() else 0
    width = min(k + per_id, int(valid.sum()))
    # Each image's best cohort candidates (own identity and faceless images out), best first: the
    # partner's identity can remove at most ``per_id`` of them, so k + per_id always suffice.
    s = np.where(valid[None, :] & (codes[:, None] != codes[None, :]), matrix, -np.inf)
    order = np.argsort(-s, axis=1)[:, :width]
    top = np.take_along_axis(s, order, axis=1)
    top_ids = codes[order]
    out = np.full(matrix.shape, NO_FACE)
    rows, cols = np.triu_indices(n, k=1)
    keep = valid[rows] & valid[cols] & np.isfinite(matrix[rows, cols])
    rows, cols = rows[keep], cols[keep]
    for start in range(0, len(rows), chunk):
        a, b = rows[start : start + chunk], cols[start : start + chunk]
        z = np.zeros(len(a))
        for side, other in ((a, b), (b, a)):
            usable = (top_ids[side] != codes[other][:, None]) & np.isfinite(top[side])
            first_k = usable & (np.cumsum(usable, axis=1) <= k)
            values = np.where(first_k, top[side], 0.0)
            count = np.maximum(first_k.sum(axis=1), 1)
            mean = values.sum(axis=1) / count
            sd = np.sqrt(np.maximum((values**2).sum(axis=1) / count - mean**2, 1e-12))
            z += (matrix[a, b] - mean) / sd / 2
        out[a, b] = z
        out[b, a] = z
    return out


def quality_adjusted(s: np.ndarray, q_min: np.ndarray, w: float) -> np.ndarray:
    """QMagFace-style: score + w x (the pair's lower image quality, standardised): a confident
    match between two good images gains, one involving a poor image must be stronger to pass."""
    out = s + w * q_min
    out[s <= NO_FACE / 2] = NO_FACE
    return out


# ---- stage: report ------------------------------------------------------------------------------


@dataclass
class Study:
    """Everything the options are measured on: the images, both pairs files, the cohorts."""

    paths: list[str]
    reported: Pairs
    tuning: Pairs
    found: np.ndarray

    @classmethod
    def load(cls) -> Study:
        paths = study_images()
        index = {p: i for i, p in enumerate(paths)}
        found = load_detections(paths)["found"]
        return cls(paths, load_pairs(REPORTED, index), load_pairs(TUNING, index), found)

    def cohort(self, pairs: Pairs, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The all-cross-identity impostor comparisons among the images of ``pairs``."""
        subset = np.unique(np.concatenate([pairs.left, pairs.right]))
        return cross_identity(self.paths, subset, valid)


def far_points(study: Study, scores: Scores) -> dict[str, float]:
    """TAR at FAR 1e-3, three ways:

    - ``tar_own``: pairs.tsv's genuine against its own 300 impostors (what ``facegate eval`` prints;
      300 impostors cannot resolve 1e-3, so this is "above every impostor");
    - ``tar_cal``: pairs.tsv's genuine at the threshold that accepts 1e-3 of the all-cross-identity
      impostors among pairs_constructed.tsv's images (how ``facegate calibrate`` sets the shipped one);
    - ``tar_cal_tuning``: pairs_constructed's own genuine at that threshold (the calibration file's TAR).
    """
    rep = scores.pairs(study.reported)
    own = evaluation.tar_at_far(rep[study.reported.same], rep[~study.reported.same], 1e-3)
    a, b = study.cohort(study.tuning, scores.valid)
    cal = evaluation.tar_at_far(rep[study.reported.same], scores.matrix[a, b], 1e-3)
    tun = scores.pairs(study.tuning)[study.tuning.same]
    return {
        "tar_own": own.tar,
        "tar_cal": cal.tar,
        "threshold_cal": cal.threshold,
        "impostors_cal": cal.impostors,
        "tar_cal_tuning": float(np.mean(tun >= cal.threshold)),
    }


def measure(study: Study, scores: Scores) -> dict[str, Any]:
    """Every number of one fixed (not fitted) option."""
    rep = scores.pairs(study.reported)
    summary = evaluation.summarise(rep, study.reported.same, study.reported.folds)
    tuning_cv, _, _ = evaluation.cross_validated_accuracy(
        scores.pairs(study.tuning), study.tuning.same, study.tuning.folds
    )
    return {
        "cv_acc": summary.cv_accuracy,
        "cv_sem": summary.cv_accuracy_sem,
        "fold_acc": fold_accuracies(rep, study.reported.same, study.reported.folds),
        "eer": summary.eer,
        "auc": summary.auc,
        "cv_acc_tuning": tuning_cv,
        **far_points(study, scores),
    }


def fold_accuracies(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> list[float]:
    out = []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = evaluation.best_threshold(scores[~test], same[~test])
        out.append(evaluation.accuracy_at(scores[test], same[test], threshold))
    return out


def measure_fitted(study: Study, make: Callable[[float], Scores], weights: Sequence[float]) -> dict[str, Any]:
    """A rule with one weight: CV on pairs.tsv with the weight fitted on its training folds; the
    TAR and the tuning numbers with the weight fitted once on pairs_constructed.tsv."""
    rep = study.reported
    cache: dict[float, Scores] = {}

    def scores(w: float) -> Scores:
        if w not in cache:
            cache[w] = make(w)
        return cache[w]

    cv, sem, chosen, per_fold = cv_fitted(lambda w: scores(w).pairs(rep), rep.same, rep.folds, weights)
    w_tuning = pick_weight(lambda w: scores(w).pairs(study.tuning), study.tuning.same, weights)
    fixed = measure(study, scores(w_tuning))
    return {
        **fixed,
        "cv_acc": cv,
        "cv_sem": sem,
        "fold_acc": per_fold,
        "weights_per_fold": chosen,
        "weight_tuning": w_tuning,
        "note": "cv_acc: weight fitted per training folds; other columns: weight fitted on pairs_constructed",
    }


def facenet_scores(
    study: Study, variants: Sequence[Variant], *, flip: bool = True, mode: str = "sum"
) -> Scores:
    raws = [facenet_raw(v.name) for v in variants]
    return Scores(cosine_matrix(fused_template(raws, flip=flip, mode=mode)), study.found)


def report(weights: Sequence[float] = tuple(WEIGHTS)) -> dict[str, Any]:
    study = Study.load()
    base_v = [Variant(0.2)]
    results: dict[str, Any] = {}
    results["service crops, m 0.20, flip (as shipped)"] = measure(
        study, Scores(cosine_matrix(fused_template([facenet_raw("service_crops")])), study.found)
    )
    for m in MARGINS:
        results[f"margin {m:.2f}, flip"] = measure(study, facenet_scores(study, [Variant(m)]))
    results["margin 0.20, no flip"] = measure(study, facenet_scores(study, base_v, flip=False))
    tta = {
        "TTA m 0.20 + 4 shifts of 4 px": base_v + shifts(0.2),
        "TTA margins 0.15/0.20/0.25": [Variant(0.15), Variant(0.2), Variant(0.25)],
        "TTA margins 0.10/0.20": [Variant(0.1), Variant(0.2)],
        "TTA margins 0.05-0.25 (5)": [Variant(m) for m in MARGINS],
        "TTA margins 0.05-0.25 + 4 shifts": [Variant(m) for m in MARGINS] + shifts(0.2),
    }
    for label, variants in tta.items():
        results[label + ", flip"] = measure(study, facenet_scores(study, variants))
    results["TTA margins 0.05-0.25 (5), mean of unit rows"] = measure(
        study, facenet_scores(study, [Variant(m) for m in MARGINS], mode="mean")
    )
    base = facenet_scores(study, base_v)
    results.update(quality_options(study, base))
    results.update(norm_options(study, base))
    results.update(dlib_options(study, base, weights))
    # The ceiling of what this study found: the best TTA and the fusion together (one row, no search).
    tta_base = facenet_scores(study, base_v + shifts(0.2))
    results.update(dlib_options(study, tta_base, weights, prefix="TTA 4 shifts ", boxes=("hog",)))
    return results


def quality_options(study: Study, base: Scores) -> dict[str, Any]:
    """Quality-weighted FaceNet scores: the raw template norm, and detection's quality verdict."""
    raw = facenet_raw(Variant(0.2).name)
    norm = np.linalg.norm(raw[:, 0] + raw[:, 1], axis=1)
    det = load_detections(study.paths)
    out = {}
    for label, q in (("FaceNet norm", norm), ("detection quality", det["quality"])):
        z = np.where(study.found, (q - np.nanmean(q[study.found])) / np.nanstd(q[study.found]), 0.0)
        q_min = np.minimum(z[:, None], z[None, :])
        grid = np.round(np.linspace(-0.05, 0.05, 21), 3)
        out[f"quality-weighted ({label}), m 0.20"] = measure_fitted(
            study, lambda w, q_min=q_min: Scores(quality_adjusted(base.matrix, q_min, w), base.valid), grid
        )
    return out


def norm_options(study: Study, base: Scores, ks: Sequence[int] = AS_NORM_K) -> dict[str, Any]:
    """FaceNet scores under AS-norm, the cohort every study image of a third identity."""
    ids = np.asarray([identity(p) for p in study.paths])
    return {
        f"AS-norm, top {k} of a third-identity cohort, m 0.20": measure(
            study, Scores(as_norm(base.matrix, ids, base.valid, k), base.valid)
        )
        for k in ks
    }


def dlib_options(
    study: Study,
    base: Scores,
    weights: Sequence[float],
    prefix: str = "",
    boxes: Sequence[str] = ("hog", "mtcnn"),
) -> dict[str, Any]:
    """dlib alone, and z-normalised weighted-sum fusion with FaceNet (``base``: m 0.20, flip)."""
    data = np.load(CACHE / "dlib.npz")
    out: dict[str, Any] = {}
    for box in boxes:
        rows = data[box]
        valid = np.isfinite(rows).all(axis=1)
        if box == "mtcnn":
            valid &= study.found
        dl = Scores(neg_distance_matrix(np.nan_to_num(rows)), valid)
        if not prefix:
            out[f"dlib ResNet alone ({box} box)"] = measure(study, dl)
        # z-normalisation: each model's mean/sd over the tuning cohort (no pairs.tsv labels used).
        both = valid & study.found
        a, b = study.cohort(study.tuning, both)
        zf, zd = z_params(base.matrix[a, b]), z_params(dl.matrix[a, b])

        def fused(w: float, dl: Scores = dl, both: np.ndarray = both, zf=zf, zd=zd) -> Scores:
            return Scores(z_fusion(base.matrix, dl.matrix, zf, zd, w), both)

        out[f"{prefix}fusion FaceNet + dlib ({box} box), equal z weights"] = measure(study, fused(0.5))
        out[f"{prefix}fusion FaceNet + dlib ({box} box), weight fitted"] = measure_fitted(
            study, fused, weights
        )
    return out


# ---- stage: specimens ---------------------------------------------------------------------------

DOCUMENTS = REPO.parent / "shared" / "data" / "documents"
#: The specimen holders that FaceNet confuses (docs/accuracy-documents.md): three different women.
LOOK_ALIKES = ("passports_China.png", "passports_Japan.png", "visas_USA2.png")


def specimens(k: int = max(AS_NORM_K)) -> list[dict[str, Any]]:
    """The look-alike specimen holders against each other: cosine and AS-norm against the dev images
    as the cohort (no dev person is a specimen holder, so nothing is left out)."""
    from facegate.client import open_channel
    from facegate.launcher import local_services
    from facegate.pipeline import subject_face
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
    from services.runtime.images import decode_image

    options = detection_pb2.DetectionOptions(
        return_crops=False, subject_only=True, subject_selection=detection_pb2.SUBJECT_SELECTION_LARGEST
    )
    net = FaceNetRaw()
    templates = {}
    with local_services(("detection",), log_dir=CACHE / "logs") as targets:
        stub = detection_pb2_grpc.DetectionServiceStub(open_channel(targets["detection"], budget_s=120))
        for name in LOOK_ALIKES:
            data = (DOCUMENTS / name).read_bytes()
            face = subject_face(
                stub.Detect(detection_pb2.DetectRequest(image=common_pb2.Image(data=data), options=options))
            )
            if face is None:
                raise SystemExit(f"no face on {name}")
            points = landmark_array(face)
            rgb = decode_image(data, max_bytes=1 << 26, max_pixels=1 << 26)
            templates[name] = fused_template([net(variant_crop(rgb, points, Variant(0.2))[None])])[0]
    study = Study.load()
    cohort = fused_template([facenet_raw(Variant(0.2).name)])[study.found]
    top = {n: np.sort(cohort @ t)[::-1][:k] for n, t in templates.items()}
    rows = []
    for i, a in enumerate(LOOK_ALIKES):
        for b in LOOK_ALIKES[i + 1 :]:
            s = float(templates[a] @ templates[b])
            z = sum((s - top[n].mean()) / top[n].std() for n in (a, b)) / 2
            rows.append({"pair": f"{a} / {b}", "cosine": s, "as_norm": float(z), "k": k})
            print(f"{a} / {b}: cosine {s:.3f}, AS-norm (top {k}) {z:.2f}")
    return rows


# ---- stage: timing ------------------------------------------------------------------------------


def median_ms(fn: Callable[[], object], repeat: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def timing(paths: Sequence[str]) -> dict[str, Any]:
    """ms a kiosk decision (two faces: live and portrait) spends on each option's extra work."""
    det = load_detections(paths)
    idx = np.flatnonzero(det["found"])[:2]
    rgbs = [read_rgb(paths[i]) for i in idx]
    net = FaceNetRaw()
    out: dict[str, Any] = {"load_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    for k in (1, 2, 3, 5, 9):  # variants per face; each variant = crop + mirror
        crops = np.stack([variant_crop(rgbs[j], det["landmarks"][idx[j]], Variant(0.2)) for j in (0, 1)] * k)
        out[f"facenet_2_faces_{k}_variants_ms"] = median_ms(lambda crops=crops: net(crops, batch=64))
    out["warp_one_crop_ms"] = median_ms(
        lambda: variant_crop(rgbs[0], det["landmarks"][idx[0]], Variant(0.2, 4, 0))
    )
    hog, predictor, encoder = dlib_models()

    def dlib_face(j: int) -> object:
        shape = predictor(rgbs[j], mtcnn_rect(det["boxes"][idx[j]]))
        return encoder.compute_face_descriptor(rgbs[j], shape, 0)

    out["dlib_descriptor_one_face_ms"] = median_ms(lambda: dlib_face(0))
    out["dlib_hog_150px_ms"] = median_ms(lambda: hog(rgbs[0], 1))
    print(json.dumps(out, indent=2))
    (OUT / "timing.json").write_text(json.dumps(out, indent=2))
    return out


# ---- output -------------------------------------------------------------------------------------


def pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def markdown(results: dict[str, Any]) -> str:
    base = results["margin 0.20, flip"]["fold_acc"]
    lines = [
        "| option | CV acc. (± SEM) | folds +/- vs m 0.20 | EER | AUC | TAR@1e-3 own imp. | "
        "TAR@1e-3 cal. | CV acc. constructed | TAR@1e-3 constructed | fitted weight |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        diff = np.asarray(r["fold_acc"]) - np.asarray(base)
        weight = ""
        if "weights_per_fold" in r:
            weight = f"{r['weight_tuning']:g} (folds {min(r['weights_per_fold']):g}–{max(r['weights_per_fold']):g})"
        lines.append(
            f"| {label} | {pct(r['cv_acc'])} ± {pct(r['cv_sem'])} | +{(diff > 1e-9).sum()}/−{(diff < -1e-9).sum()} "
            f"| {pct(r['eer'])} | {r['auc']:.5f} | {pct(r['tar_own'])} | {pct(r['tar_cal'])} "
            f"| {pct(r['cv_acc_tuning'])} | {pct(r['tar_cal_tuning'])} | {weight} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.score_study", description=__doc__.splitlines()[0])
    parser.add_argument(
        "stage", choices=("detect", "embed", "check", "dlib", "report", "specimens", "timing", "all")
    )
    parser.add_argument(
        "--model",
        choices=("int8", "float32"),
        default="int8",
        help="which FaceNet file: int8 (the CPU default since 6566e6d) or float32; rows and results "
        "go to var/score_study/<model>/",
    )
    args = parser.parse_args(argv)
    global OUT
    OUT = CACHE / args.model
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = study_images()
    if args.stage in ("detect", "all") and not (CACHE / "detections.npz").exists():
        detect(paths)
    if args.stage in ("embed", "all"):
        variants = [Variant(m) for m in MARGINS] + shifts(0.2)
        embed(paths, variants)
    if args.stage in ("check", "all"):
        check(paths)
    if args.stage in ("dlib", "all"):
        dlib_descriptors(paths)
    if args.stage in ("specimens", "all"):
        (OUT / "specimens.json").write_text(json.dumps(specimens(), indent=2))
    if args.stage in ("timing", "all"):
        timing(paths)
    if args.stage in ("report", "all"):
        results = report()
        (OUT / "report.json").write_text(json.dumps(results, indent=2))
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
