"""The loaded FaceNet: uint8 crops in, unit 128-d float32 rows out, on one of three runtimes.

On a GPU, pre-processing (per-image standardisation), optional flip fusion and L2
normalisation run inside the same ``tf.function`` as the network, so a batch costs one
graph call. On a CPU the network runs as a TFLite file through XNNPACK with the same pre- and
post-processing in float32 numpy around it: by default its int8 (dynamic-range) conversion,
about 5x cheaper than float32 here and a model version of its own (``FACENET_INT8``); or, with
runtime ``tflite``, the float32 file (a third faster than the graph, the same rows to ~1e-6, so
the same version as the graph). See ``services.embedding.tflite``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from services.embedding.facenet import load_converted, load_tflite
from services.embedding.tflite import TfliteNet
from services.runtime.model_spec import BY_RUNTIME, FACENET

log = logging.getLogger("facegate.embedding.model")

DeviceChoice = Literal["auto", "cpu", "gpu"]
RuntimeChoice = Literal["auto", "tensorflow", "tflite", "tflite-int8"]


def pick_device(choice: DeviceChoice) -> str:
    """The TF device string to run on: the first GPU when one is visible (and allowed), else the CPU.

    Memory growth is switched on for every GPU so the service takes what it uses rather than
    the whole card (other processes may share it).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if choice == "cpu" or not gpus:
        if choice == "gpu":
            raise RuntimeError("FACEGATE_EMBEDDING_DEVICE=gpu but TensorFlow sees no GPU")
        return "/CPU:0"
    for gpu in gpus:
        # RuntimeError: TF already initialised this GPU in this process; growth cannot change any more.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    return "/GPU:0"


def pick_runtime(choice: RuntimeChoice, device: str) -> str:
    """auto: int8 through XNNPACK on a CPU, the TensorFlow graph on a GPU (TFLite runs on the CPU only)."""
    if choice == "auto":
        return "tensorflow" if device.startswith("/GPU") else "tflite-int8"
    if choice.startswith("tflite") and device.startswith("/GPU"):
        raise RuntimeError(f"the {choice} runtime runs on the CPU; choose device cpu or runtime tensorflow")
    return choice


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LoadInfo:
    device: str
    runtime: str
    load_s: float
    weights_sha256: str


class EmbeddingModel:
    """FaceNet with its pre- and post-processing, compiled (or interpreted) once per flip setting."""

    def __init__(
        self,
        models_dir: Path,
        *,
        flip_fusion: bool = True,
        device: DeviceChoice = "auto",
        runtime: RuntimeChoice = "auto",
        threads: int = 0,
    ) -> None:
        """``threads`` is XNNPACK's thread count (0: every core this process may use).

        The runtime decides the model version served (``self.spec``): see ``BY_RUNTIME``.
        """
        started = time.perf_counter()
        self.flip_fusion = flip_fusion
        self.device = pick_device(device)
        self.runtime = pick_runtime(runtime, self.device)
        self.spec = BY_RUNTIME[self.runtime]
        if self.runtime.startswith("tflite"):
            int8 = self.runtime == "tflite-int8"
            blob, manifest = load_tflite(models_dir, FACENET.model_version, int8=int8)
            if int8 and manifest.tflite_int8_sha256 != self.spec.model_version:
                raise ValueError(
                    f"the int8 conversion in {models_dir} has digest {manifest.tflite_int8_sha256[:12]}…, "
                    f"not the pinned model version {self.spec.model_version[:12]}… (a TensorFlow other "
                    "than the locked one converts differently); run runtime tflite, or pin and calibrate "
                    "the new file as a model version of its own"
                )
            self._lite = TfliteNet(blob, threads=threads or _cpu_threads())
        else:
            self._load_tensorflow(models_dir)
            manifest = self._manifest
        self.info = LoadInfo(
            self.device, self.runtime, time.perf_counter() - started, manifest.weights_sha256
        )
        log.info(
            "model loaded",
            extra={
                "device": self.device,
                "runtime": self.runtime,
                "model_version": self.spec.model_version[:12],
                "load_s": round(self.info.load_s, 2),
                "flip_fusion": flip_fusion,
            },
        )

    def _load_tensorflow(self, models_dir: Path) -> None:
        import tensorflow as tf

        with tf.device(self.device):
            self._net, self._manifest = load_converted(models_dir, FACENET.model_version)
        size = self.spec.input_size
        signature = [tf.TensorSpec([None, size, size, 3], tf.uint8)]
        self._plain = tf.function(self._graph(flip=False), input_signature=signature, jit_compile=False)
        self._fused = tf.function(self._graph(flip=True), input_signature=signature, jit_compile=False)

    def _graph(self, *, flip: bool) -> Any:
        import tensorflow as tf

        net = self._net
        device = self.device
        pixels = float(self.spec.input_size * self.spec.input_size * 3)

        def run(crops: Any) -> Any:
            with tf.device(device):
                x = tf.cast(crops, tf.float32)
                # Per-image standardisation exactly as FaceNet was trained: (x - mean) / max(std, 1/sqrt(N)).
                mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
                std = tf.math.reduce_std(x, axis=[1, 2, 3], keepdims=True)
                x = (x - mean) / tf.maximum(std, 1.0 / tf.sqrt(pixels))
                if flip:
                    n = tf.shape(x)[0]
                    both = net(tf.concat([x, tf.reverse(x, axis=[2])], axis=0), training=False)
                    y = both[:n] + both[n:]
                else:
                    y = net(x, training=False)
                return tf.math.l2_normalize(y, axis=1)

        return run

    def embed(self, crops: np.ndarray, *, flip: bool | None = None) -> np.ndarray:
        """Embed N x S x S x 3 uint8 crops; returns N x D float32 unit rows.

        ``flip`` overrides the configured fusion (the evaluation compares both on one load).
        """
        if crops.ndim != 4 or crops.shape[1:] != (self.spec.input_size, self.spec.input_size, 3):
            raise ValueError(f"crops must be N x {self.spec.input_size} x {self.spec.input_size} x 3")
        if crops.dtype != np.uint8:
            raise ValueError("crops must be uint8")
        if crops.shape[0] == 0:
            return np.zeros((0, self.spec.dimension), np.float32)
        use_flip = self.flip_fusion if flip is None else flip
        if self.runtime.startswith("tflite"):
            return self._embed_lite(crops, flip=use_flip)
        fn = self._fused if use_flip else self._plain
        return fn(crops).numpy().astype(np.float32, copy=False)

    def _embed_lite(self, crops: np.ndarray, *, flip: bool) -> np.ndarray:
        """The TensorFlow graph's arithmetic (see ``_graph``) in float32 numpy around XNNPACK."""
        x = crops.astype(np.float32)
        pixels = float(x[0].size)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        std = x.std(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) / np.maximum(std, np.float32(1.0 / np.sqrt(pixels)))
        if flip:
            n = len(x)
            both = self._lite(np.concatenate([x, x[:, :, ::-1]], axis=0))
            y = both[:n] + both[n:]
        else:
            y = self._lite(x)
        norms = np.sqrt(np.maximum(np.sum(y * y, axis=1, keepdims=True), np.float32(1e-12)))
        return (y / norms).astype(np.float32, copy=False)

    def warmup(self, batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Trace and run the compiled graph once per size so the first request pays nothing extra."""
        started = time.perf_counter()
        size = self.spec.input_size
        rng = np.random.default_rng(0)
        for n in batch_sizes:
            crops = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            out = self.embed(crops)
            if out.shape != (n, self.spec.dimension) or not np.all(np.isfinite(out)):
                raise RuntimeError("warm-up produced malformed embeddings")
        return time.perf_counter() - started
