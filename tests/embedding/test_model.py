"""The real FaceNet: faithful to the shipped file, the same on both runtimes, and its scores separate people."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from services.embedding.config import EmbeddingSettings
from services.embedding.facenet import EXPECTED_TENSORS, MANIFEST_NAME, compare_with_h5
from services.embedding.model import EmbeddingModel
from services.embedding.tflite import TFLITE_NAME
from services.runtime.model_spec import FACENET


@pytest.fixture(scope="module")
def graph_model() -> EmbeddingModel:
    """FaceNet on the TensorFlow graph runtime (the GPU's), beside the session's CPU default."""
    return EmbeddingModel(
        EmbeddingSettings().models_dir, flip_fusion=True, device="cpu", runtime="tensorflow"
    )


def test_the_cpu_default_runs_tflite(model):
    assert model.runtime == "tflite" and model.device == "/CPU:0"


def test_every_weight_tensor_matches_the_h5(graph_model):
    models_dir = EmbeddingSettings().models_dir
    assert compare_with_h5(graph_model._net, models_dir / "facenet_keras.h5") == EXPECTED_TENSORS


def test_both_runtimes_give_the_same_embeddings(model, graph_model, distinct_crops):
    """XNNPACK and the TF graph are one model version: rows must agree far inside any threshold."""
    batch = np.stack(distinct_crops[:6])
    for flip in (True, False):
        lite, graph = model.embed(batch, flip=flip), graph_model.embed(batch, flip=flip)
        assert np.min(np.sum(lite * graph, axis=1)) > 0.99999
        assert np.max(np.abs(lite - graph)) < 1e-3


def test_a_tflite_file_that_does_not_match_its_manifest_is_refused(tmp_path):
    models_dir = EmbeddingSettings().models_dir
    shutil.copy(models_dir / MANIFEST_NAME, tmp_path / MANIFEST_NAME)
    blob = bytearray((models_dir / TFLITE_NAME).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / TFLITE_NAME).write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match its manifest; run `make models`"):
        EmbeddingModel(tmp_path, spec=FACENET, device="cpu", runtime="tflite")


def test_embeddings_are_unit_length_and_deterministic(model, distinct_crops):
    batch = np.stack(distinct_crops[:6])
    first = model.embed(batch)
    again = model.embed(batch)
    assert first.shape == (6, 128) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, again)
    # the same crop alone gives the same row (batch composition does not change the answer)
    assert np.allclose(model.embed(batch[:1])[0], first[0], atol=1e-5)


def test_genuine_pairs_score_far_above_impostors(model, pair_crops):
    def scores(kind: str) -> np.ndarray:
        left = model.embed(np.stack([a for a, _ in pair_crops[kind]]))
        right = model.embed(np.stack([b for _, b in pair_crops[kind]]))
        return np.sum(left * right, axis=1)

    genuine, impostor = scores("genuine"), scores("impostor")
    assert genuine.mean() - impostor.mean() > 0.4, (genuine.mean(), impostor.mean())
    assert genuine.min() > impostor.max()


def test_flip_fusion_is_the_sum_of_crop_and_mirror(model, distinct_crops):
    crop = distinct_crops[0][None]
    plain = model.embed(crop, flip=False)[0]
    mirror = model.embed(crop[:, :, ::-1].copy(), flip=False)[0]
    fused = model.embed(crop, flip=True)[0]
    # unnormalised outputs are not exposed; the fused direction lies between the two unit vectors
    assert not np.allclose(plain, fused, atol=1e-4)
    assert np.dot(fused, plain) > 0.9 and np.dot(fused, mirror) > 0.9
    assert np.allclose(model.embed(crop[:, :, ::-1].copy(), flip=True)[0], fused, atol=1e-4)
