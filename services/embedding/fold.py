"""Batch normalisation folded into the convolution (or dense layer) before it, in float64.

Why before the TFLite conversion: the converter folds each BatchNormalization itself, with
TensorFlow's ``rsqrt`` kernel, whose last bits depend on the CPU's vector instructions. The
converted files then differ from one machine to the next (an AMD Zen 4 gave int8 digest
``c4716c94…`` where earlier machines gave ``f457c248…``), and an int8 file whose digest is its
model version cannot be reproduced by ``make models``. Folded here, with IEEE square root and
division in float64 rounded once to float32, the converter has nothing left to compute but
exact float32 products (ScaleSum's scale), so the files are the same on every machine. The test
checks that every kernel in the converted file is one of ours, byte for byte.

``y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta`` becomes a convolution with kernel
``w * r`` and bias ``(b - mean) * r + beta``, ``r = gamma / sqrt(var + eps)``; the normalisation
layer becomes a linear activation (an identity the converter drops). Outputs agree with the
unfolded network to ~2e-6.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Largest raw-output difference allowed between a network and its folded copy (FaceNet: ~2e-6).
FOLD_MAX_DIFF = 1e-4


def fold_batch_norms(model: Any) -> Any:
    """A copy of the functional ``model`` with every foldable BatchNormalization folded."""
    import keras

    folds = foldable(model)
    norms = {bn.name for bn in folds.values()}

    def clone(layer: Any) -> Any:
        if layer.name in norms:
            return keras.layers.Activation("linear", name=layer.name)
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("mask", None)  # recorded on the Keras 2 file's Lambda nodes; no layer here takes one
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in model.layers:
        if layer.name in norms or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        if layer.name in folds:
            target.set_weights(folded_weights(layer, folds[layer.name]))
        else:
            target.set_weights(layer.get_weights())
    return folded


def foldable(model: Any) -> dict[str, Any]:
    """Producer layer name -> the BatchNormalization that alone consumes it (channels last)."""
    import keras

    out = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        (node,) = layer._inbound_nodes
        (parent,) = node.parent_nodes
        producer = parent.operation
        if not isinstance(producer, keras.layers.Conv2D | keras.layers.Dense):
            continue
        if len(producer._outbound_nodes) != 1:
            continue  # the raw output is used elsewhere too: folding would change that use
        axis = layer.axis[0] if isinstance(layer.axis, list | tuple) else layer.axis
        if axis not in (-1, len(layer.input.shape) - 1):
            raise ValueError(f"{layer.name} normalises axis {layer.axis}, not the channels")
        out[producer.name] = layer
    return out


def folded_weights(layer: Any, bn: Any) -> list[np.ndarray]:
    """Kernel and bias of ``layer`` with ``bn`` folded in (float64, rounded once to float32)."""
    weights = [w.astype(np.float64) for w in layer.get_weights()]
    kernel = weights[0]
    channels = kernel.shape[-1]
    bias = weights[1] if layer.use_bias else np.zeros(channels)
    stats = {w.path.rsplit("/", 1)[-1]: v for w, v in zip(bn.weights, bn.get_weights(), strict=True)}
    gamma = stats["gamma"].astype(np.float64) if "gamma" in stats else np.ones(channels)
    beta = stats["beta"].astype(np.float64) if "beta" in stats else np.zeros(channels)
    mean, var = stats["moving_mean"].astype(np.float64), stats["moving_variance"].astype(np.float64)
    r = gamma / np.sqrt(var + float(bn.epsilon))
    return [(kernel * r).astype(np.float32), ((bias - mean) * r + beta).astype(np.float32)]


def check_fold(model: Any, folded: Any, shape: tuple[int, ...] = (4, 160, 160, 3)) -> None:
    """ValueError unless ``folded`` computes what ``model`` does on a fixed random batch."""
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    diff = float(np.max(np.abs(model(x, training=False).numpy() - folded(x, training=False).numpy())))
    if not diff <= FOLD_MAX_DIFF:
        raise ValueError(f"the network with batch norms folded differs by {diff:.3g} (> {FOLD_MAX_DIFF})")
