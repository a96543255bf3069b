"""FaceNet under Keras 3: the one custom layer the 2017 file needs, conversion, and verification.

The shipped ``facenet_keras.h5`` (Keras 2.1.2) cannot be loaded as-is by Keras 3: its 21
``Lambda`` layers hold marshalled Python 3.6 bytecode. All of them compute
``inputs[0] + inputs[1] * scale`` with ``scale`` stored in the Lambda's ``arguments``, so a
small layer that does exactly that replaces them, and every weight tensor can then be
checked against the file. ``model_setup`` converts once to a native ``.keras`` file (faster
to load, no bytecode) and records digests in a manifest that the service checks on load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Converted model and its manifest, beside the .h5 in the models directory.
KERAS_NAME = "facenet.keras"
MANIFEST_NAME = "facenet.manifest.json"
#: What the file must hold; a different count means a different (or damaged) model.
EXPECTED_TENSORS = 490
EXPECTED_PARAMS = 22_808_144
EXPECTED_SCALE_SUMS = 21
#: How the TFLite files are made, recorded in the manifest: files from another recipe are redone.
#: "bn-folded-f64": batch normalisation folded in float64 first (services.embedding.fold).
CONVERSION = "bn-folded-f64"

_LAMBDA_KEYS = (
    "function",
    "function_type",
    "output_shape",
    "output_shape_type",
    "output_shape_module",
    "module",
    "mask",
    "mask_type",
    "arguments",
)


def _scale_sum_class() -> type:
    """Define (once) the Keras layer; deferred so importing this module does not import TF."""
    global _SCALE_SUM
    if _SCALE_SUM is not None:
        return _SCALE_SUM
    import keras

    @keras.saving.register_keras_serializable(package="facegate")
    class ScaleSum(keras.layers.Layer):
        """``inputs[0] + inputs[1] * scale``: the residual merge of Inception-ResNet blocks.

        Accepts a Keras 2 ``Lambda`` config (taking ``scale`` from its ``arguments``) so it
        can stand in for the Lambda while the .h5 loads.
        """

        def __init__(self, scale: float | None = None, **kwargs: Any) -> None:
            lambda_args = kwargs.get("arguments") or {}
            for key in _LAMBDA_KEYS:
                kwargs.pop(key, None)
            if scale is None:
                if "scale" not in lambda_args:
                    raise ValueError("ScaleSum needs a scale (Lambda arguments lack 'scale')")
                scale = lambda_args["scale"]
            super().__init__(**kwargs)
            self.scale = float(scale)

        def call(self, inputs: Any) -> Any:
            return inputs[0] + inputs[1] * self.scale

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape[0]

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "scale": self.scale}

    _SCALE_SUM = ScaleSum
    return ScaleSum


_SCALE_SUM: type | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(model: Any) -> str:
    """SHA-256 over every weight tensor (name, shape, bytes) in model order."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(weight.path.encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def load_h5(h5_path: Path) -> Any:
    """Load the Keras 2 file under Keras 3 with ScaleSum standing in for every Lambda."""
    import keras

    scale_sum = _scale_sum_class()
    model = keras.models.load_model(str(h5_path), custom_objects={"Lambda": scale_sum}, compile=False)
    merges = sum(isinstance(layer, scale_sum) for layer in model.layers)
    if merges != EXPECTED_SCALE_SUMS:
        raise ValueError(f"expected {EXPECTED_SCALE_SUMS} scale-sum merges, found {merges}")
    return model


def compare_with_h5(model: Any, h5_path: Path) -> int:
    """Check every weight tensor of ``model`` equals the one stored in the .h5; returns the count.

    Raises ValueError naming the first tensor that is missing or differs, so a conversion
    that silently re-initialised a layer can never ship.
    """
    import h5py

    checked = 0
    with h5py.File(h5_path, "r") as fh:
        root = fh["model_weights"]
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in root:
                raise ValueError(f"layer {layer.name} has weights but the file has none")
            group = root[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            if len(names) != len(layer.weights):
                raise ValueError(f"layer {layer.name}: {len(layer.weights)} tensors vs {len(names)} in file")
            for weight, name in zip(layer.weights, names, strict=True):
                stored = np.asarray(group[name])
                value = weight.numpy()
                if stored.shape != value.shape or not np.array_equal(stored, value):
                    raise ValueError(f"tensor {name} differs from the file")
                checked += 1
    if checked != EXPECTED_TENSORS:
        raise ValueError(f"checked {checked} tensors; the file should hold {EXPECTED_TENSORS}")
    return checked


@dataclass(frozen=True)
class Manifest:
    """What ``model_setup`` converted, so the service can prove it loads those exact weights."""

    source_sha256: str  # SHA-256 of facenet_keras.h5 = the model version
    keras_sha256: str  # SHA-256 of the converted .keras file
    tflite_sha256: str  # SHA-256 of the same network as a TFLite file (services.embedding.tflite)
    tflite_int8_sha256: str  # SHA-256 of its int8 dynamic-range conversion (FACENET_INT8's version)
    weights_sha256: str  # weights_digest() of the converted model
    conversion: str  # CONVERSION: the recipe that made the TFLite files
    tensors: int
    params: int
    keras_version: str

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))


def convert(h5_path: Path, models_dir: Path, expected_sha256: str) -> Manifest:
    """Convert the verified .h5 into ``facenet.keras``, ``facenet.tflite``, ``facenet_int8.tflite``
    and the manifest (idempotent).

    Skips the work when a manifest for this source exists and every file still matches it (a
    manifest from before a file existed no longer reads, so it is redone).
    """
    import keras

    from services.embedding import tflite
    from services.embedding.fold import check_fold, fold_batch_norms

    keras_path = models_dir / KERAS_NAME
    tflite_path = models_dir / tflite.TFLITE_NAME
    int8_path = models_dir / tflite.TFLITE_INT8_NAME
    manifest_path = models_dir / MANIFEST_NAME
    if manifest_path.exists() and keras_path.exists() and tflite_path.exists() and int8_path.exists():
        try:
            existing = Manifest.read(manifest_path)
        except (ValueError, TypeError):
            existing = None
        if (
            existing is not None
            and existing.conversion == CONVERSION
            and existing.source_sha256 == expected_sha256
            and existing.keras_sha256 == sha256_of(keras_path)
            and existing.tflite_sha256 == sha256_of(tflite_path)
            and existing.tflite_int8_sha256 == sha256_of(int8_path)
        ):
            return existing
    source = sha256_of(h5_path)
    if source != expected_sha256:
        raise ValueError(f"{h5_path.name} SHA-256 {source} != pinned {expected_sha256}")
    model = load_h5(h5_path)
    tensors = compare_with_h5(model, h5_path)
    partial = models_dir / (KERAS_NAME + ".partial.keras")
    model.save(str(partial))
    reloaded = keras.models.load_model(str(partial), compile=False)
    digest = weights_digest(model)
    if weights_digest(reloaded) != digest:
        partial.unlink()
        raise ValueError("the converted .keras file does not hold the same weights")
    compare_with_h5(reloaded, h5_path)
    partial.replace(keras_path)
    folded = fold_batch_norms(reloaded)
    check_fold(reloaded, folded)
    tflite.convert(folded, tflite_path)
    tflite.convert(folded, int8_path, int8=True)
    manifest = Manifest(
        source_sha256=source,
        keras_sha256=sha256_of(keras_path),
        tflite_sha256=sha256_of(tflite_path),
        tflite_int8_sha256=sha256_of(int8_path),
        weights_sha256=digest,
        conversion=CONVERSION,
        tensors=tensors,
        params=int(model.count_params()),
        keras_version=keras.__version__,
    )
    if manifest.params != EXPECTED_PARAMS:
        raise ValueError(f"model has {manifest.params} parameters; expected {EXPECTED_PARAMS}")
    manifest.write(manifest_path)
    return manifest


def _read_manifest(models_dir: Path, expected_sha256: str, model_path: Path) -> Manifest:
    """The manifest, after checking it describes the pinned weights; tells the operator what to run."""
    manifest_path = models_dir / MANIFEST_NAME
    if not model_path.exists() or not manifest_path.exists():
        raise FileNotFoundError(f"{model_path} or its manifest is missing; run `make models`")
    try:
        manifest = Manifest.read(manifest_path)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{manifest_path} is unreadable or outdated; run `make models`") from exc
    if manifest.source_sha256 != expected_sha256:
        raise ValueError(
            f"converted model is of weights {manifest.source_sha256[:12]}…, not the pinned "
            f"{expected_sha256[:12]}…; run `make models`"
        )
    return manifest


def load_tflite(models_dir: Path, expected_sha256: str, *, int8: bool = False) -> tuple[bytes, Manifest]:
    """The bytes of ``facenet.tflite`` (or, with ``int8``, ``facenet_int8.tflite``) after checking
    they are the ones ``make models`` verified."""
    from services.embedding.tflite import TFLITE_INT8_NAME, TFLITE_NAME

    path = models_dir / (TFLITE_INT8_NAME if int8 else TFLITE_NAME)
    manifest = _read_manifest(models_dir, expected_sha256, path)
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != (manifest.tflite_int8_sha256 if int8 else manifest.tflite_sha256):
        raise ValueError(f"{path} does not match its manifest; run `make models`")
    return blob, manifest


def load_converted(models_dir: Path, expected_sha256: str) -> tuple[Any, Manifest]:
    """Load ``facenet.keras`` after checking it is the conversion of the pinned weights.

    Raises FileNotFoundError / ValueError with a message telling the operator to run
    ``make models``; the service must not serve a model it cannot vouch for.
    """
    import keras

    keras_path = models_dir / KERAS_NAME
    manifest = _read_manifest(models_dir, expected_sha256, keras_path)
    if sha256_of(keras_path) != manifest.keras_sha256:
        raise ValueError(f"{keras_path} does not match its manifest; run `make models`")
    _scale_sum_class()
    model = keras.models.load_model(str(keras_path), compile=False)
    if len(model.weights) != manifest.tensors:
        raise ValueError(f"{keras_path} holds {len(model.weights)} tensors, manifest says {manifest.tensors}")
    return model, manifest
