"""The real FaceNet: faithful to the shipped file, the same on both float32 runtimes, int8 close to
them and pinned, and its scores separate people."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from services.embedding.config import EmbeddingSettings
from services.embedding.facenet import EXPECTED_TENSORS, MANIFEST_NAME, compare_with_h5
from services.embedding.model import EmbeddingModel
from services.embedding.tflite import TFLITE_INT8_NAME, TFLITE_NAME
from services.runtime.model_spec import FACENET, FACENET_INT8


@pytest.fixture(scope="module")
def graph_model() -> EmbeddingModel:
    """FaceNet on the TensorFlow graph runtime (the GPU's), beside the session's CPU default."""
    return EmbeddingModel(
        EmbeddingSettings().models_dir, flip_fusion=True, device="cpu", runtime="tensorflow"
    )


@pytest.fixture(scope="module")
def float_lite() -> EmbeddingModel:
    """float32 FaceNet through XNNPACK (runtime tflite)."""
    return EmbeddingModel(EmbeddingSettings().models_dir, flip_fusion=True, device="cpu", runtime="tflite")


def test_the_cpu_default_runs_int8_tflite(model):
    assert model.runtime == "tflite-int8" and model.device == "/CPU:0"
    assert model.spec == FACENET_INT8 and FACENET_INT8.model_version != FACENET.model_version


def test_every_weight_tensor_matches_the_h5(graph_model):
    models_dir = EmbeddingSettings().models_dir
    assert compare_with_h5(graph_model._net, models_dir / "facenet_keras.h5") == EXPECTED_TENSORS


def test_both_float_runtimes_give_the_same_embeddings(float_lite, graph_model, distinct_crops):
    """XNNPACK and the TF graph are one model version: rows must agree far inside any threshold."""
    assert float_lite.spec == graph_model.spec == FACENET
    batch = np.stack(distinct_crops[:6])
    for flip in (True, False):
        lite, graph = float_lite.embed(batch, flip=flip), graph_model.embed(batch, flip=flip)
        assert np.min(np.sum(lite * graph, axis=1)) > 0.99999
        assert np.max(np.abs(lite - graph)) < 1e-3


def test_int8_rows_stay_close_to_float_but_are_not_the_same_model(model, float_lite, distinct_crops):
    """Close enough to keep the accuracy (measured: eval unchanged), far enough to need its own version."""
    batch = np.stack(distinct_crops)
    cosine = np.sum(model.embed(batch) * float_lite.embed(batch), axis=1)
    assert cosine.min() > 0.99, cosine.min()
    assert cosine.max() < 0.99999  # were it float32's rows, one version and calibration would do


def test_the_int8_file_on_disk_is_the_pinned_model_version():
    models_dir = EmbeddingSettings().models_dir
    digest = hashlib.sha256((models_dir / TFLITE_INT8_NAME).read_bytes()).hexdigest()
    assert digest == FACENET_INT8.model_version


def test_a_tflite_file_that_does_not_match_its_manifest_is_refused(tmp_path):
    models_dir = EmbeddingSettings().models_dir
    shutil.copy(models_dir / MANIFEST_NAME, tmp_path / MANIFEST_NAME)
    blob = bytearray((models_dir / TFLITE_NAME).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / TFLITE_NAME).write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match its manifest; run `make models`"):
        EmbeddingModel(tmp_path, device="cpu", runtime="tflite")


def test_an_int8_file_other_than_the_pinned_one_is_refused(tmp_path):
    """A TensorFlow other than the locked one converts differently: that file was never calibrated."""
    models_dir = EmbeddingSettings().models_dir
    blob = bytearray((models_dir / TFLITE_INT8_NAME).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / TFLITE_INT8_NAME).write_bytes(bytes(blob))
    shutil.copy(models_dir / MANIFEST_NAME, tmp_path / MANIFEST_NAME)
    with pytest.raises(ValueError, match="does not match its manifest"):
        EmbeddingModel(tmp_path, device="cpu", runtime="tflite-int8")
    manifest = json.loads((models_dir / MANIFEST_NAME).read_text())
    manifest["tflite_int8_sha256"] = hashlib.sha256(bytes(blob)).hexdigest()
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not the pinned model version"):
        EmbeddingModel(tmp_path, device="cpu", runtime="tflite-int8")


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
