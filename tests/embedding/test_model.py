"""The real FaceNet: faithful to the shipped file, and its scores separate people."""

from __future__ import annotations

import numpy as np

from services.embedding.config import EmbeddingSettings
from services.embedding.facenet import EXPECTED_TENSORS, compare_with_h5


def test_every_weight_tensor_matches_the_h5(model):
    models_dir = EmbeddingSettings().models_dir
    assert compare_with_h5(model._net, models_dir / "facenet_keras.h5") == EXPECTED_TENSORS


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
