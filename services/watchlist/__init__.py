"""Watchlist service: subjects, templates and 1:N search on Milvus."""

import os

# numpy's OpenBLAS keeps its worker threads spinning for 2^28 cycles (~0.1 s) after every call it
# runs on several threads. The in-process index's exact scan is such a call, so after each search
# a watchlist process burnt most of a core while detection and embedding worked on the next
# traveller: 69 ms of CPU per one-kiosk decision (5 with this); one-kiosk p50 82 -> 62 ms, 16
# kiosks 19.4 -> 24.4 decisions/s (docs/watchlist.md). 2^4 cycles lets the threads sleep at once;
# the scan keeps both threads (one thread would double its time at 100k templates). OpenBLAS reads
# the variable when it loads, so this comes before anything here imports numpy (pymilvus does).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

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
