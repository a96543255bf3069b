# syntax=docker/dockerfile:1.7
# A slim facegate image (no TensorFlow): gateway, watchlist, docverify, or the officer console.
#   docker build -f deploy/docker/slim.Dockerfile --build-arg SERVICE=gateway --build-arg MODULE=gateway -t facegate/gateway:0.1.0 .
#   docker build -f deploy/docker/slim.Dockerfile --build-arg SERVICE=watchlist -t facegate/watchlist:0.1.0 .
#   docker build -f deploy/docker/slim.Dockerfile --build-arg SERVICE=docverify -t facegate/docverify:0.1.0 .
#   docker build -f deploy/docker/slim.Dockerfile --build-arg SERVICE=console --build-arg MODULE=console -t facegate/console:0.1.0 .
# Installs exactly requirements/<SERVICE>.lock (the lock `make` uses), then the project with --no-deps.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- gRPC stubs, generated from proto/ with the pinned grpcio-tools -------------------------------
FROM ${PYTHON_IMAGE} AS stubs
WORKDIR /src
COPY requirements/proto.lock requirements/proto.lock
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements/proto.lock
COPY proto proto
RUN mkdir -p facegate/v1 \
 && python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. proto/facegate/v1/*.proto \
 && touch facegate/v1/__init__.py

# ---- the service's virtual environment ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build-arg SERVICE is required (gateway, watchlist, docverify or console)"; exit 1; }
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:${PATH}
RUN python -m venv /opt/venv && pip install --no-cache-dir --disable-pip-version-check "pip==25.3"
COPY requirements/${SERVICE}.lock /tmp/service.lock
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/service.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY facegate facegate
COPY services services
COPY gateway gateway
COPY console console
COPY --from=stubs /src/facegate/v1 facegate/v1
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps . && rm -rf /src

# ---- runtime: non-root, nothing but the venv ------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG MODULE=services.${SERVICE}
RUN groupadd --gid 10001 facegate && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin facegate
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    FACEGATE_HOST=0.0.0.0 \
    FACEGATE_MODULE=${MODULE}
USER 10001:10001
# The Deployments name the module explicitly (command:); this default serves `docker run`.
CMD ["sh", "-c", "exec python -m \"$FACEGATE_MODULE\""]
