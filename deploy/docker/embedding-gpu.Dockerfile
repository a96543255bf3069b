# syntax=docker/dockerfile:1.7
# The embedding service on an NVIDIA GPU (production overlay).
#   docker build -f deploy/docker/embedding-gpu.Dockerfile -t facegate/embedding:0.1.0-gpu .
# requirements/embedding.lock with tensorflow-cpu swapped for tensorflow[and-cuda] at the same version
# (the CUDA and cuDNN libraries come as pip wheels; the node's NVIDIA driver is mounted by the
# NVIDIA container toolkit). Everything else is pinned by the lock. Weights baked in at build time.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS stubs
WORKDIR /src
COPY requirements/proto.lock requirements/proto.lock
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements/proto.lock
COPY proto proto
RUN mkdir -p facegate/v1 \
 && python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. proto/facegate/v1/*.proto \
 && touch facegate/v1/__init__.py

FROM ${PYTHON_IMAGE} AS build
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:${PATH} TF_CPP_MIN_LOG_LEVEL=2
RUN python -m venv /opt/venv && pip install --no-cache-dir --disable-pip-version-check "pip==25.3"
COPY requirements/embedding.lock /tmp/embedding.lock
# (the lock spells it tensorflow_cpu or tensorflow-cpu: PEP 503 treats both alike, so the filter must too)
RUN TF=$(sed -nE 's/^tensorflow[-_]cpu==//Ip' /tmp/embedding.lock) \
 && test -n "$TF" \
 && grep -viE '^tensorflow[-_]cpu==' /tmp/embedding.lock > /tmp/gpu.lock \
 && ! grep -qiE '^tensorflow[-_]cpu' /tmp/gpu.lock \
 && pip install --no-cache-dir --disable-pip-version-check -r /tmp/gpu.lock "tensorflow[and-cuda]==${TF}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY facegate facegate
COPY services services
COPY gateway gateway
COPY --from=stubs /src/facegate/v1 facegate/v1
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && mkdir -p /opt/facegate/models \
 && python -m services.embedding.model_setup --models-dir /opt/facegate/models \
 && rm -rf /src

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 facegate && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin facegate
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/facegate/models /opt/facegate/models
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=2 \
    FACEGATE_HOST=0.0.0.0 \
    FACEGATE_EMBEDDING_MODELS_DIR=/opt/facegate/models \
    FACEGATE_EMBEDDING_DEVICE=gpu \
    FACEGATE_MODULE=services.embedding
USER 10001:10001
CMD ["sh", "-c", "exec python -m \"$FACEGATE_MODULE\""]
