# facegate — every target installs what it needs first (idempotent: a second call skips what is done).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_VENV := $(VENV)/.installed
STAMP_PROTO := facegate/v1/.generated
MODELS_DIR ?= models
STAMP_MODELS := $(MODELS_DIR)/.ready
PROTOS := $(wildcard proto/facegate/v1/*.proto)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)

.PHONY: all setup proto models run test test-console chromium lint bench bench-peer lock docs clean distclean deploy-tools deploy-check

all: setup proto models

setup: $(STAMP_VENV)

$(STAMP_VENV): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (facegate needs Python 3.11)"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

proto: $(STAMP_PROTO)

$(STAMP_PROTO): $(PROTOS) $(STAMP_VENV)
	@mkdir -p facegate/v1
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	@touch facegate/v1/__init__.py $@

models: $(STAMP_MODELS)

$(STAMP_MODELS): services/embedding/model_setup.py services/embedding/facenet.py services/embedding/fold.py services/embedding/tflite.py $(STAMP_VENV)
	$(PY) -m services.embedding.model_setup --models-dir $(MODELS_DIR)
	@touch $@

run: setup proto models
	$(PY) -m facegate.launcher

# The deploy checks in tests/deploy run strictly: a missing kubectl, promtool, haproxy or npm package fails
# them instead of skipping (.ci/run installs the Debian tools when missing).
test: setup proto models deploy-tools chromium
	FACEGATE_DEPLOY_STRICT=1 $(PY) -m pytest $(PYTEST_ARGS)

# The reliability and security suite at full size (tests/reliability/; `make test` runs it small):
# 20 kiosks under load, kill -9 of every process in turn, crash-safe enrolment on Milvus Lite and a
# Milvus server, >= 10,000 generated inputs, the role matrix, log hygiene, the audit count. Loopback
# only, every loop bounded; rewrites bench/results/reliability.md. About 15 min on 2 cores.
test-reliability: setup proto models
	FACEGATE_RELIABILITY=full $(PY) -m pytest tests/reliability $(PYTEST_ARGS)

# The web console's whole browser suite (tests/console; `make test` runs the officer's journey only):
# Debian's Chromium, headless, driven by Playwright against the real stack, about 1 min on 2 cores.
# Screenshots of each page: var/console-screenshots/ (FACEGATE_CONSOLE_SCREENSHOTS_TO_DOCS=1 copies
# them to docs/console/).
test-console: setup proto models chromium
	FACEGATE_CONSOLE_BROWSER=full $(PY) -m pytest tests/console $(PYTEST_ARGS)

# The browser the console tests drive (Playwright's own download cannot work offline): Debian's
# chromium, installed with apt when missing and allowed (root), else a hint.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -qq --no-install-recommends chromium; } || \
	  { echo "make: chromium not found (apt-get install -y chromium)"; exit 1; }

lint: setup proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup proto models bench-peer
	$(PY) -m bench $(BENCH)

# The face_recognition peer for bench/bench_kiosk.py, in the venv but never in `make setup`/`make test`:
# requirements/bench.lock (prebuilt dlib-bin, the models), then face_recognition without its `dlib`
# requirement, which pip would compile for minutes.
STAMP_PEER := $(VENV)/.bench-peer
FACE_RECOGNITION := face_recognition==1.3.0
bench-peer: $(STAMP_PEER)

$(STAMP_PEER): requirements/bench.lock $(STAMP_VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/bench.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "$(FACE_RECOGNITION)"
	@touch $@

# Rewrite the configuration tables in README.md and docs/ from the settings classes (tools/config_docs.py).
docs: setup proto
	$(PY) -m tools.config_docs

# Re-resolve requirements.lock from pyproject.toml's direct pins (run after changing them), then one
# lock per optional group in requirements/ at the same versions (tools/lock.py). pip resolves in a
# throwaway venv (the pinned pip); nothing is installed.
LOCK_VENV := /tmp/facegate-lock
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check "pip==25.3"
	$(LOCK_VENV)/bin/python tools/lock.py --python $(LOCK_VENV)/bin/python

# Kubernetes manifests, images, alerts and dashboard, checked offline (tests/deploy; docs/kubernetes.md).
# `make test` installs the npm packages below and runs the same tests strictly (a bare pytest run
# skips the Node.js checks without them). kubectl and promtool come from Debian packages.
DEPLOY_NODE := var/deploy-tools/node
STAMP_DEPLOY_NODE := $(DEPLOY_NODE)/.installed
deploy-tools: $(STAMP_DEPLOY_NODE)

$(STAMP_DEPLOY_NODE): tests/deploy/package.json tests/deploy/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm not found (apt-get install -y nodejs npm)"; exit 1; }
	@mkdir -p $(DEPLOY_NODE)
	cp tests/deploy/package.json tests/deploy/package-lock.json $(DEPLOY_NODE)/
	cd $(DEPLOY_NODE) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deploy-check: setup proto deploy-tools
	@command -v promtool >/dev/null || { echo "make: promtool not found (apt-get install -y --no-install-recommends prometheus)"; exit 1; }
	FACEGATE_DEPLOY_STRICT=1 $(PY) -m pytest tests/deploy $(PYTEST_ARGS)

clean:
	rm -rf facegate/v1 .pytest_cache var/test-*
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(MODELS_DIR) var
