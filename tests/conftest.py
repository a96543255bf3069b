"""Session-wide fixtures. Service-specific fixtures (loaded models, stores) live in each
tests/<service>/conftest.py with session scope, so a model loads once per test run."""

from __future__ import annotations

import os

import pytest

from tests.support import DOCUMENTS, FACES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def faces_dir():
    if not (FACES / "pairs.tsv").exists():
        pytest.fail(f"dev face data missing at {FACES} (expected ../shared/data/faces beside the repo)")
    return FACES


@pytest.fixture(scope="session")
def documents_dir():
    if not DOCUMENTS.exists():
        pytest.fail(f"specimen documents missing at {DOCUMENTS}")
    return DOCUMENTS
