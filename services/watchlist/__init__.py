"""Watchlist service: subjects, templates and 1:N search on Milvus."""

import os

_uri = os.environ.get("MILVUS_URI", "")
if _uri and "://" not in _uri and "pymilvus" not in __import__("sys").modules:
    # pymilvus 3.0.2 parses MILVUS_URI when it is imported and refuses a Milvus Lite path
    # ("Illegal uri"), although MilvusClient accepts one. The service reads the variable itself
    # (config.py), so pymilvus is imported with the variable hidden, then it is put back.
    del os.environ["MILVUS_URI"]
    try:
        import pymilvus  # noqa: F401
    finally:
        os.environ["MILVUS_URI"] = _uri
