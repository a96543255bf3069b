"""MTCNN behind a small interface: downscale policy, batching by shape, coordinates mapped back.

Why this wrapper exists:
- A kiosk sends 1280x720 to 4K frames; MTCNN's cost grows with the pixel count, so detection runs on
  a copy whose longest side is at most ``max_side`` and every coordinate is mapped back to the
  caller's pixels (crops are then cut from the full-resolution image).
- ``mtcnn`` pads a mixed-size batch to the largest image and picks one image pyramid for all of
  them; grouping a batch by detection shape avoids both the padding and the shared pyramid.
- We ask for raw float output (``output_type="numpy"``, no post-processing) so landmarks are not
  rounded to integers and boxes are not clamped to the frame (the quality check measures how much
  of the face lies outside it).
- mtcnn runs its three networks eagerly, layer by layer: on 2 cores ~ 110 ms of every call was
  Python and op dispatch, not arithmetic. ``load()`` compiles each network once into a graph
  (``tf.function`` over a fixed input signature, so no shape ever retraces: PNet takes any pyramid
  level, RNet 24x24 and ONet 48x48 patches); the outputs are the same numbers (measured: identical
  boxes and landmarks) at about half the time for a 1280x720 frame and a third for a 150 px photo.
- A caller that only wants large faces (a kiosk) can ask for ``scale_to_min_face``: the copy is
  then scaled so the smallest wanted face becomes MTCNN's smallest (20 px), which shrinks the work
  with the square of the scale while crops are still cut from the full-resolution image.
- Batch mode can disagree with single mode (dependency-facts: one LFW face found alone was missed
  in a batch). Every image a batch reports with *no* face is therefore re-run alone, so a batch
  never answers "no face" where a single call would have found one (see docs/detection.md).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: MTCNN's own pyramid cannot see faces smaller than its 12-pixel input cell.
MTCNN_MIN_CELL = 12
#: The smallest face side mtcnn's pyramid is asked to reach (its own default).
MTCNN_PYRAMID_MIN = 20.0
#: Input shapes of the three networks: PNet takes whole pyramid levels, RNet and ONet patches.
_STAGE_SIGNATURES = ((None, None, None, 3), (None, 24, 24, 3), (None, 48, 48, 3))
#: mtcnn 1.0 sizes its pyramid from the image alone, so a ``min_face_size`` above its default
#: of 20 shrinks the last levels below PNet's input and the whole call fails silently with no
#: faces (measured: a group photo lost all three 90-110 px faces at 36). Larger minimums are
#: applied as a filter afterwards instead.
MTCNN_MAX_PYRAMID_MIN = 20.0


@dataclass(frozen=True)
class RawFace:
    """One MTCNN detection in original-image pixels."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 (may extend past the frame)
    confidence: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, mouth left, mouth right (image-left first)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Detection:
    """All faces MTCNN found in one image, plus the scale of the copy it ran on."""

    faces: list[RawFace]
    scale: float
    retried_alone: bool = False


def detection_scale(height: int, width: int, max_side: int) -> float:
    """Scale of the copy MTCNN runs on: 1 unless the longest side exceeds ``max_side``."""
    longest = max(height, width)
    return 1.0 if longest <= max_side else max_side / float(longest)


def min_face_scale(min_face_px: float) -> float:
    """Scale at which a ``min_face_px`` face becomes the pyramid's smallest face (1 when smaller)."""
    return 1.0 if min_face_px <= MTCNN_PYRAMID_MIN else MTCNN_PYRAMID_MIN / float(min_face_px)


def compile_stages(mtcnn: object) -> None:
    """Replace each mtcnn stage's eager Keras model by one compiled graph with a fixed signature."""
    import tensorflow as tf

    for stage, shape in zip(mtcnn.stages, _STAGE_SIGNATURES, strict=True):  # type: ignore[attr-defined]
        model = stage._model

        def call(x: object, model: object = model) -> object:
            return model(x, training=False)  # type: ignore[operator]

        stage._model = tf.function(call, input_signature=[tf.TensorSpec(shape, tf.float32)])


def downscale(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return rgb
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # INTER_AREA averages source pixels: no aliasing, which would otherwise create false edges.
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


class FaceDetector:
    """Thread-safe MTCNN runner. ``load()`` builds the three networks once (in the service warm-up)."""

    def __init__(
        self,
        *,
        device: str = "CPU:0",
        max_side: int = 1024,
        threshold_pnet: float = 0.6,
        threshold_rnet: float = 0.7,
        threshold_onet: float = 0.7,
        scale_factor: float = 0.709,
        retry_empty_alone: bool = True,
        compiled: bool = True,
    ) -> None:
        self.device = device
        self.max_side = max_side
        self.threshold_pnet = threshold_pnet
        self.threshold_rnet = threshold_rnet
        self.threshold_onet = threshold_onet
        self.scale_factor = scale_factor
        self.retry_empty_alone = retry_empty_alone
        self.compiled = compiled
        self._mtcnn = None
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._mtcnn is not None

    def load(self) -> None:
        with self._load_lock:
            if self._mtcnn is not None:
                return
            from mtcnn import MTCNN  # imports TensorFlow: only when the service warms up

            mtcnn = MTCNN(device=self.device)
            if self.compiled:
                compile_stages(mtcnn)
            # One pass through all three stages traces the networks, so the first request is not slow
            # (a flat image gives RNet/ONet nothing to do, so a synthetic face-like pattern is used).
            mtcnn.detect_faces(_warmup_image(), output_type="numpy", postprocess=False)
            self._mtcnn = mtcnn

    def detect(
        self, images: Sequence[np.ndarray], min_face_px: float = 20.0, *, scale_to_min_face: bool = False
    ) -> list[Detection]:
        """Detect faces in each image (RGB uint8, any size); one MTCNN batch per detection shape.

        ``min_face_px`` is the smallest face side, in original pixels, the pyramid should reach.
        With ``scale_to_min_face`` the copy is made no larger than needed to find faces of that size
        (a face of ``min_face_px`` becomes 20 px on the copy); smaller faces are then not found.
        """
        if self._mtcnn is None:
            raise RuntimeError("detector not loaded; call load() first")
        extra = min_face_scale(min_face_px) if scale_to_min_face else 1.0
        scales = [min(detection_scale(img.shape[0], img.shape[1], self.max_side), extra) for img in images]
        copies = [downscale(img, s) for img, s in zip(images, scales, strict=True)]
        groups: dict[tuple[int, int, float], list[int]] = defaultdict(list)
        for index, (copy, scale) in enumerate(zip(copies, scales, strict=True)):
            pyramid_min = min(max(float(MTCNN_MIN_CELL), min_face_px * scale), MTCNN_MAX_PYRAMID_MIN)
            groups[(copy.shape[0], copy.shape[1], pyramid_min)].append(index)

        rows: list[np.ndarray | None] = [None] * len(images)
        retried = [False] * len(images)
        for (_h, _w, pyramid_min), members in groups.items():
            found = self._run([copies[i] for i in members], pyramid_min)
            for slot, index in enumerate(members):
                rows[index] = found[slot]
            if len(members) > 1 and self.retry_empty_alone:
                for slot, index in enumerate(members):
                    if len(found[slot]) == 0:
                        rows[index] = self._run([copies[index]], pyramid_min)[0]
                        retried[index] = True

        return [
            Detection(faces=_to_faces(r, s), scale=s, retried_alone=t)
            for r, s, t in zip(rows, scales, retried, strict=True)
        ]

    def _run(self, copies: list[np.ndarray], pyramid_min: float) -> list[np.ndarray]:
        """One MTCNN call over same-shape images; returns one (n, 16) array per image."""
        assert self._mtcnn is not None
        batch = copies if len(copies) > 1 else copies[0]
        out = self._mtcnn.detect_faces(
            batch,
            box_format="xyxy",
            output_type="numpy",
            postprocess=False,
            min_face_size=pyramid_min,
            scale_factor=self.scale_factor,
            threshold_pnet=self.threshold_pnet,
            threshold_rnet=self.threshold_rnet,
            threshold_onet=self.threshold_onet,
        )
        out = np.asarray(out, dtype=np.float64).reshape(-1, 16)
        ids = out[:, 0].astype(int) if len(out) else np.empty(0, dtype=int)
        return [out[ids == i] for i in range(len(copies))]


def _warmup_image() -> np.ndarray:
    """A 160x160 grey image with a dark-eyed oval, enough for PNet to pass candidates on."""
    yy, xx = np.mgrid[0:160, 0:160]
    img = np.full((160, 160), 90.0)
    img[((xx - 80) / 45.0) ** 2 + ((yy - 85) / 60.0) ** 2 <= 1] = 200.0
    for cx in (62, 98):
        img[((xx - cx) / 9.0) ** 2 + ((yy - 70) / 5.0) ** 2 <= 1] = 30.0
    img[((xx - 80) / 16.0) ** 2 + ((yy - 118) / 5.0) ** 2 <= 1] = 60.0
    return np.repeat(img[:, :, None], 3, axis=2).astype(np.uint8)


def _to_faces(rows: np.ndarray | None, scale: float) -> list[RawFace]:
    """Map rows [id, x1, y1, x2, y2, conf, x*5, y*5] from the detection copy back to original pixels."""
    if rows is None or len(rows) == 0:
        return []
    faces = []
    for row in rows:
        box = tuple(float(v) / scale for v in row[1:5])
        marks = np.stack([row[6:11], row[11:16]], axis=1) / scale
        faces.append(RawFace(box=box, confidence=float(row[5]), landmarks=marks))  # type: ignore[arg-type]
    faces.sort(key=lambda f: f.confidence, reverse=True)
    return faces
