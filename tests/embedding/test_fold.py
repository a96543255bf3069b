"""Batch norms folded before the TFLite conversion (services/embedding/fold.py), on a small network
of FaceNet's kinds of layers: the same outputs, the float64 formula exactly, a conv whose output is
used twice left alone, and a converted file whose every kernel is ours byte for byte (so the
converter computed nothing that could differ between CPUs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.embedding.fold import fold_batch_norms, foldable


def small_network() -> Any:
    """conv (no bias) + BN without scale, as FaceNet; conv with bias + BN with scale; a conv whose
    output feeds a BN *and* an add (not foldable); dense + BN; random statistics everywhere.
    (Keras is imported here, not at collection: TensorFlow's import binds its logging to the
    stderr pytest is capturing at that moment.)"""
    import keras

    rng = np.random.default_rng(3)
    x_in = keras.Input((12, 12, 3))
    a = keras.layers.Conv2D(6, 3, use_bias=False, name="c1")(x_in)
    a = keras.layers.BatchNormalization(scale=False, epsilon=1e-3, name="bn1")(a)
    a = keras.layers.Activation("relu")(a)
    b = keras.layers.Conv2D(6, 1, use_bias=True, name="c2")(a)
    b = keras.layers.BatchNormalization(epsilon=1e-3, name="bn2")(b)
    c = keras.layers.Conv2D(6, 1, use_bias=False, name="c3")(b)
    c = keras.layers.Add()([keras.layers.BatchNormalization(name="bn3")(c), c])
    d = keras.layers.Dense(5, use_bias=False, name="d1")(keras.layers.Flatten()(c))
    d = keras.layers.BatchNormalization(scale=False, name="bn4")(d)
    model = keras.Model(x_in, d)
    for layer in model.layers:
        if layer.weights:
            values = []
            for w in layer.weights:
                shape = tuple(w.shape)
                if "variance" in w.path:
                    values.append(rng.uniform(0.05, 3.0, shape).astype(np.float32))
                else:
                    values.append(rng.normal(0, 0.5, shape).astype(np.float32))
            layer.set_weights(values)
    return model


@pytest.fixture(scope="module")
def network() -> Any:
    return small_network()


def test_folding_keeps_the_outputs(network) -> None:
    folded = fold_batch_norms(network)
    x = np.random.default_rng(0).normal(size=(3, 12, 12, 3)).astype(np.float32)
    ref = network(x, training=False).numpy()
    diff = np.abs(ref - folded(x, training=False).numpy())
    assert diff.max() < 1e-6 * np.abs(ref).max(), (diff.max(), np.abs(ref).max())
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert [kinds[n] for n in ("bn1", "bn2", "bn4")] == ["Activation"] * 3
    assert kinds["bn3"] == "BatchNormalization"  # c3's output is also added raw: left as it was
    assert set(foldable(network)) == {"c1", "c2", "d1"}


def test_the_folded_weights_are_the_float64_formula_rounded_once(network) -> None:
    folded = fold_batch_norms(network)
    conv, bn = network.get_layer("c2"), network.get_layer("bn2")
    w, b = (v.astype(np.float64) for v in conv.get_weights())
    gamma, beta, mean, var = (v.astype(np.float64) for v in bn.get_weights())
    r = gamma / np.sqrt(var + 1e-3)
    kernel, bias = folded.get_layer("c2").get_weights()
    assert np.array_equal(kernel, (w * r).astype(np.float32))
    assert np.array_equal(bias, ((b - mean) * r + beta).astype(np.float32))


def test_the_converter_keeps_every_folded_kernel_byte_for_byte(network) -> None:
    """Nothing left for TFLite to fold, so nothing whose last bits depend on the CPU."""
    import tensorflow as tf

    from services.embedding.tflite import open_interpreter

    folded = fold_batch_norms(network)
    blob = tf.lite.TFLiteConverter.from_keras_model(folded).convert()
    interpreter = open_interpreter(blob)
    in_file = set()
    for detail in interpreter.get_tensor_details():
        try:
            in_file.add(interpreter.get_tensor(detail["index"]).tobytes())
        except ValueError:
            continue  # activations have no data
    for name in ("c1", "c2", "d1"):
        kernel = folded.get_layer(name).get_weights()[0]
        stored = kernel.transpose(3, 0, 1, 2) if kernel.ndim == 4 else kernel.T
        assert np.ascontiguousarray(stored).tobytes() in in_file, name


def test_a_fold_that_changes_the_outputs_is_refused(network) -> None:
    from services.embedding.fold import check_fold

    folded = fold_batch_norms(network)
    check_fold(network, folded, shape=(2, 12, 12, 3))
    kernel, bias = folded.get_layer("c2").get_weights()
    folded.get_layer("c2").set_weights([kernel, bias + 1e-2])  # a bias folded wrongly
    with pytest.raises(ValueError, match="batch norms folded differs"):
        check_fold(network, folded, shape=(2, 12, 12, 3))
