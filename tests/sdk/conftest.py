"""The SDK runs against the same real detection, embedding and docverify servers the docverify tests use."""

from tests.docverify.conftest import (  # noqa: F401  (pytest fixtures, imported to share their definitions)
    calibration_dir,
    detection_server,
    docverify_server,
    embedding_server,
)
