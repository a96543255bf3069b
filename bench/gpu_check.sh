#!/usr/bin/env bash
# GPU check for issue 12 (prepared; run it on a machine with an NVIDIA GPU, from the repository root):
#   bash bench/gpu_check.sh            # results under ${OUT:-var/gpu-check}
# 1. a separate venv with the GPU TensorFlow variant (tensorflow[and-cuda]==2.21.0, as the GPU images
#    install it) and the rest of requirements.lock without tensorflow_cpu;
# 2. the embedding model on /GPU:0: faces/s at batch 1, 2, 4, ..., 256 (flip fusion on and off);
# 3. the kiosk bench (bench/bench_kiosk.py) with FACEGATE_EMBEDDING_DEVICE=gpu, one and 1-16 kiosks.
# Needs the models (make models) and the stubs (make proto) in the tree. Takes ~ 5-8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-var/gpu-check}
VENV=${GPU_VENV:-.venv-gpu}
PY=$VENV/bin/python
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=$PWD

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

if [ ! -x "$PY" ]; then
  python3.11 -m venv "$VENV"
  $PY -m pip install --quiet --disable-pip-version-check "pip==25.3"
  grep -viE '^(tensorflow[-_]cpu)==' requirements.lock > "$OUT/requirements-gpu.txt"
  echo "tensorflow[and-cuda]==2.21.0" >> "$OUT/requirements-gpu.txt"
  $PY -m pip install --quiet --disable-pip-version-check -r "$OUT/requirements-gpu.txt"
  $PY -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
fi
$PY -c "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); print('GPUs:', g); assert g" \
  | tee -a "$OUT/gpu.txt"

# Embedding throughput on the GPU, batch 1..256, flip fusion on and off.
$PY - <<'EOF' | tee "$OUT/embedding-gpu.txt"
import time
from pathlib import Path
import numpy as np
from services.embedding.model import EmbeddingModel

model = EmbeddingModel(Path("models"), device="gpu")
print("device", model.device)
rng = np.random.default_rng(0)
print("| batch | flip | ms per call p50 | faces/s |")
print("|---:|---|---:|---:|")
for flip in (True, False):
    for n in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        crops = rng.integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)
        model.embed(crops, flip=flip)  # trace and warm this shape
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            model.embed(crops, flip=flip)
            times.append(time.perf_counter() - t0)
        p50 = float(np.median(times))
        print(f"| {n} | {'on' if flip else 'off'} | {p50 * 1000:.1f} | {n / p50:.0f} |", flush=True)
EOF

# The kiosk scenario with FaceNet on the GPU (MTCNN stays on the CPU: its small networks gain little).
# The GPU serves float32 FaceNet, a model version other than the CPU's int8 default: the watchlist's
# templates must be of it (the bench's fill and every service read this variable).
FACEGATE_WATCHLIST_MODEL_VERSION=$($PY -c "from services.runtime.model_spec import FACENET; print(FACENET.model_version)")
export FACEGATE_WATCHLIST_MODEL_VERSION
$PY -m bench.bench_kiosk --no-peer --env FACEGATE_EMBEDDING_DEVICE=gpu \
  --out "$OUT/kiosk-gpu.md" --json "$OUT/kiosk-gpu.json"
grep -E "^\| (p50|p99) |^\| [0-9]+ \| [0-9]+ \|" "$OUT/kiosk-gpu.md" || true
echo "results in $OUT"
