"""FaceNet as a TensorFlow Lite file run by XNNPACK: the same network, faster on a CPU.

Measured on the 2-core dev machine (bench/results/embedding.md): four 160x160 crops take
~60 ms through XNNPACK against ~80 ms through the TensorFlow graph, and the rows agree to
~2e-6, so the model version (the weights' SHA-256) stays the same. ``model_setup`` converts
the verified ``facenet.keras`` once, checks the converted file's outputs against Keras on a
fixed batch, and records its digest in the manifest; the service refuses a file that does
not match. On a GPU the TensorFlow graph stays the better runtime.

The same conversion with dynamic-range quantisation (int8 weights, activations quantised per call)
writes ``facenet_int8.tflite``: four crops in ~12 ms instead of ~62 ms on two cores here, rows at
cosine ~0.999 to float32. That is a different model version (``FACENET_INT8``), calibrated apart.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

TFLITE_NAME = "facenet.tflite"
TFLITE_INT8_NAME = "facenet_int8.tflite"
#: Largest difference allowed between Keras and TFLite raw outputs on the check batch
#: (measured: ~2e-6 on outputs of magnitude ~1; anything near this bound is a broken conversion).
MAX_ABS_DIFF = 1e-3
#: Smallest cosine allowed between Keras and int8 TFLite rows on the check batch (measured ~0.999).
MIN_INT8_COSINE = 0.99
_CHECK_SHAPE = (4, 160, 160, 3)


def convert(keras_model: Any, target: Path, *, int8: bool = False) -> None:
    """Write ``keras_model`` as a TFLite file to ``target`` after checking its outputs.

    float32 (default) or, with ``int8``, dynamic-range quantised. Raises ValueError when the
    converted network disagrees with Keras on a fixed random batch (float32: by more than
    MAX_ABS_DIFF; int8: a row cosine under MIN_INT8_COSINE), so a conversion that dropped weights
    (it happens when variables are not captured: the file then holds a few hundred kB and answers
    NaN) can never ship.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # The converter prints the exported signature and each of its ~500 captured tensors to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        blob = converter.convert()
    x = np.random.default_rng(0).normal(size=_CHECK_SHAPE).astype(np.float32)
    expected = keras_model(tf.constant(x), training=False).numpy()
    got = TfliteNet(blob, threads=1)(x)
    if not np.all(np.isfinite(got)):
        raise ValueError("the TFLite conversion answers NaN or infinity")
    if int8:
        cosine = float(np.min(np.sum(_unit(got) * _unit(expected), axis=1)))
        if cosine < MIN_INT8_COSINE:
            raise ValueError(f"the int8 conversion's rows reach only cosine {cosine:.4f} to Keras")
    else:
        diff = float(np.max(np.abs(got - expected)))
        if diff > MAX_ABS_DIFF:
            raise ValueError(f"the TFLite conversion differs from Keras by {diff:.3g} (> {MAX_ABS_DIFF})")
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(blob)
    partial.replace(target)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def open_interpreter(model: bytes, *, threads: int | None = None) -> Any:
    """A TFLite interpreter over ``model``, without the deprecation notice it prints every time.

    tf.lite's interpreter is deprecated in favour of the ai-edge-litert package but still in the
    pinned TensorFlow; LiteRT 2.3 runs the same XNNPACK to the same rows at the same speed
    (measured: bench/results/kiosk.md), so moving is left for when TensorFlow drops it.
    """
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_content=model, num_threads=threads)


class TfliteNet:
    """The network as a callable on float32 N x S x S x 3 batches, safe to share between threads.

    One interpreter serves every batch size: resizing its input costs ~0.3 ms once a size has
    been seen (XNNPACK keeps its packed weights), so no per-size copies of the 90 MB model.
    """

    def __init__(self, model: bytes, *, threads: int) -> None:
        self._interp = open_interpreter(model, threads=threads)
        self._input = self._interp.get_input_details()[0]["index"]
        self._output = self._interp.get_output_details()[0]["index"]
        self._rows = -1
        self._lock = threading.Lock()  # an interpreter is not re-entrant

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            if batch.shape[0] != self._rows:
                self._interp.resize_tensor_input(self._input, list(batch.shape))
                self._interp.allocate_tensors()
                self._rows = batch.shape[0]
            self._interp.set_tensor(self._input, np.ascontiguousarray(batch, dtype=np.float32))
            self._interp.invoke()
            return self._interp.get_tensor(self._output).copy()
