"""Similarity-transform alignment of a face to a canonical 5-point template.

Why a similarity transform (rotation, uniform scale, translation) and not a full affine: it
keeps each face's own proportions, so identity cues are not distorted, while it removes the
in-plane roll and the scale/position differences that the embedding model would otherwise have
to absorb. (The one fixed squash below is the same for every face, so it compares like with like.)

Geometry. FaceNet was trained on MTCNN boxes plus a margin, resized to a square. The canonical
face here is therefore "the MTCNN box" itself: the five points where MTCNN puts the landmarks
inside its box on a frontal face, measured as the mean over the 424 near-frontal LFW dev faces
(|roll| <= 10 deg, |yaw| <= 15 deg), in box-relative units and mirrored to be symmetric. For an
AlignmentSpec (size S, margin m) that unit box is scaled to ``(1 - m) * S`` and centred, so a
fraction ``m`` of the crop side is border (m/2 each side), as the proto says. FaceNet's spec
(160, 0.2) puts the eyes at (50.2, 64.4) and (109.8, 64.4), the mouth corners at y = 112.1.

FaceNet's training crops were that box plus margin *resized to a square*, i.e. squashed
vertically by the box's width/height ratio; a fixed squash of ``ASPECT`` after the similarity
transform reproduces it while still removing roll, scale and position noise.

Measured (FaceNet, flip-fused, 10-fold accuracy on pairs_constructed.tsv, 1,220 pairs): this
template with the squash at m=0.2 gives 99.75% (d' 6.10); without the squash 99.43% (d' 6.05);
the ArcFace 112 template at m=0.2 99.43% (d' 5.41); the unaligned "box + 20%" crop 99.67%
(d' 6.00). On the official pairs.tsv: 99.33% / 99.00% / 99.50% / 99.50%. See docs/detection.md.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.runtime.errors import InvalidArgument

#: Canonical landmarks in a unit face box: left eye, right eye (image-left first), nose tip,
#: left and right mouth corner. Mean MTCNN layout on frontal LFW faces (see module docstring).
CANONICAL = np.array(
    [
        [0.2671, 0.3782],
        [0.7329, 0.3782],
        [0.5000, 0.5760],
        [0.2962, 0.7507],
        [0.7038, 0.7507],
    ],
    dtype=np.float64,
)
#: FaceNet's training crops were MTCNN box + margin resized to a square, so faces were squashed
#: vertically by the box's width/height ratio (mean 0.749 over the LFW dev subjects). Reproducing
#: that fixed squash after the similarity transform is what FaceNet expects; 1.0 disables it.
ASPECT = 0.75
#: The ArcFace/InsightFace 112x112 template, kept for comparison (it scored lower with FaceNet).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

MIN_SIZE = 32
MAX_SIZE = 1024
MIN_MARGIN = 0.0
MAX_MARGIN = 0.5


def validate_spec(size: int, margin: float) -> None:
    """InvalidArgument unless size and margin are in range (shared by config and requests)."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidArgument(
            f"alignment.size is {size}; it must be between {MIN_SIZE} and {MAX_SIZE} pixels"
        )
    if not (MIN_MARGIN <= margin <= MAX_MARGIN) or not np.isfinite(margin):
        raise InvalidArgument(
            f"alignment.margin is {margin:g}; it must be between {MIN_MARGIN} and {MAX_MARGIN}"
        )


def template_points(size: int, margin: float) -> np.ndarray:
    """The five canonical points in an S x S crop with margin m (float pixel coordinates)."""
    face = (1.0 - margin) * size
    offset = margin * size / 2.0
    return CANONICAL * face + offset


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src`` points onto ``dst``; 2x3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = float((sigma * d).sum() / var_src) if var_src > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def align_matrix(landmarks: np.ndarray, size: int, margin: float, aspect: float = ASPECT) -> np.ndarray:
    """2x3 transform from image pixels to the crop: a similarity, then the fixed vertical squash.

    The similarity is fitted to the template stretched back by ``1/aspect``, so after the squash
    the landmarks land on the template points themselves.
    """
    dst = template_points(size, margin)
    unsquashed = dst / np.array([1.0, aspect])
    matrix = similarity_transform(landmarks, unsquashed)
    matrix[1, :] *= aspect
    return matrix


def align_face(
    rgb: np.ndarray, landmarks: np.ndarray, size: int, margin: float, aspect: float = ASPECT
) -> np.ndarray:
    """Warp the face so its landmarks fall on the template; returns an S x S x 3 uint8 crop.

    Works on the full-resolution image. When the face is much larger than the crop, the region
    is first reduced with area averaging, because bilinear sampling at a scale below 1/2 aliases.
    """
    matrix = align_matrix(landmarks, size, margin, aspect)
    scale = float(min(np.hypot(matrix[0, 0], matrix[1, 0]), np.hypot(matrix[0, 1], matrix[1, 1])))
    image = rgb
    if scale < 0.5:
        # Cut the source region the crop covers, shrink it to ~2x the final scale, then warp.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
        src_corners = corners @ inverse.T
        height, width = rgb.shape[:2]
        x0 = int(max(0, np.floor(src_corners[:, 0].min()) - 2))
        y0 = int(max(0, np.floor(src_corners[:, 1].min()) - 2))
        x1 = int(min(width, np.ceil(src_corners[:, 0].max()) + 2))
        y1 = int(min(height, np.ceil(src_corners[:, 1].max()) + 2))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            factor = 2.0 * scale
            region = rgb[y0:y1, x0:x1]
            new_size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
            image = cv2.resize(region, new_size, interpolation=cv2.INTER_AREA)
            fx = new_size[0] / (x1 - x0)
            fy = new_size[1] / (y1 - y0)
            # Compose: crop = M @ (original); original = (reduced / f) + (x0, y0).
            pre = np.array([[1.0 / fx, 0.0, x0], [0.0, 1.0 / fy, y0], [0.0, 0.0, 1.0]])
            matrix = (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ pre)[:2]
    crop = cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.ascontiguousarray(crop, dtype=np.uint8)


def warp_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 transform to (N, 2) points (used by tests to check where landmarks land)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]
