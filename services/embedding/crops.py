"""Turn AlignedFace messages into a uint8 batch, refusing anything the model cannot take.

Each refusal names the face index and what was expected, so a client with a wrong crop
geometry (or float pixels) learns how to fix it without reading server logs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facegate.v1 import common_pb2
from services.runtime.errors import InvalidArgument, ResourceExhausted
from services.runtime.model_spec import ModelSpec


def crops_from_request(
    faces: Sequence[common_pb2.AlignedFace], spec: ModelSpec, max_faces: int
) -> np.ndarray:
    """N x S x S x 3 uint8 array from the request's faces, or InvalidArgument / ResourceExhausted."""
    if len(faces) == 0:
        raise InvalidArgument("no faces in the request; send at least one aligned crop")
    if len(faces) > max_faces:
        raise ResourceExhausted(f"{len(faces)} faces in one request; the limit is {max_faces}")
    size = spec.input_size
    expected = size * size * 3
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, face in enumerate(faces):
        if face.channels != 3:
            raise InvalidArgument(
                f"faces[{i}]: channels is {face.channels}; only 3 (interleaved RGB) is accepted"
            )
        if face.width != size or face.height != size:
            raise InvalidArgument(
                f"faces[{i}]: crop is {face.width}x{face.height}; model {spec.model_id} expects "
                f"{size}x{size} (see GetModelInfo / AlignmentSpec)"
            )
        got = len(face.rgb)
        if got != expected:
            per_value = got / expected if expected else 0
            hint = (
                f" ({per_value:g} bytes per value: send 8-bit RGB, not float or 16-bit data)"
                if got > expected and got % expected == 0
                else ""
            )
            raise InvalidArgument(
                f"faces[{i}]: rgb holds {got} bytes; {size}x{size}x3 uint8 needs {expected}{hint}"
            )
        out[i] = np.frombuffer(face.rgb, np.uint8).reshape(size, size, 3)
    return out


def aligned_face(crop: np.ndarray) -> common_pb2.AlignedFace:
    """The message for an H x W x 3 uint8 crop (used by clients, tests and the evaluation)."""
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    height, width, channels = crop.shape
    return common_pb2.AlignedFace(rgb=crop.tobytes(), width=width, height=height, channels=channels)
