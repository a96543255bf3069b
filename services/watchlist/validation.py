"""Request validation: every rule that protects Milvus filter expressions and the index.

Names and ids end up inside Milvus boolean expressions, so they are restricted to characters that
need no quoting; free-text metadata never enters an expression and is only length-checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from services.runtime.errors import InvalidArgument

WATCHLIST_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
CATEGORY = re.compile(r"^[a-z0-9_]{0,64}$")
MODEL_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: Byte limits of the VARCHAR columns (Milvus counts bytes).
TEXT_LIMITS = {
    "display_name": 256,
    "reason": 1024,
    "added_by": 256,
    "external_ref": 256,
    "description": 1024,
    "source": 512,
}
#: A template must be a unit vector to this tolerance (cosine = inner product only on unit vectors).
NORM_TOLERANCE = 1e-2


def watchlist_name(name: str, field: str = "watchlist") -> str:
    if not WATCHLIST_NAME.match(name):
        raise InvalidArgument(f"{field} {name!r} is not a valid watchlist name (expected [a-z0-9_]{{1,64}})")
    return name


def subject_id(value: str) -> str:
    if not SUBJECT_ID.match(value):
        raise InvalidArgument(
            "subject_id must be 1-128 characters of [A-Za-z0-9._:-] starting with a letter or digit"
        )
    return value


def idempotency_key(value: str) -> str:
    if value and not IDEMPOTENCY_KEY.match(value):
        raise InvalidArgument("idempotency_key must be 1-128 characters of [A-Za-z0-9._:/+=-]")
    return value


def category(value: str) -> str:
    if not CATEGORY.match(value):
        raise InvalidArgument(f"category {value!r} is not valid (expected [a-z0-9_]{{0,64}})")
    return value


def model_version(value: str, field: str = "model_version") -> str:
    if not MODEL_VERSION.match(value):
        raise InvalidArgument(f"{field} must be 1-64 characters of [A-Za-z0-9._-]")
    return value


def text(field: str, value: str) -> str:
    limit = TEXT_LIMITS[field]
    if len(value.encode("utf-8")) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} bytes")
    if "\x00" in value:
        raise InvalidArgument(f"{field} contains a NUL character")
    return value


def no_duplicates(field: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InvalidArgument(f"{field} lists {value!r} more than once")
        seen.add(value)


def vector(values: Sequence[float], dimension: int, field: str) -> np.ndarray:
    """A float32 unit vector, or InvalidArgument saying exactly what is wrong with it."""
    if len(values) != dimension:
        raise InvalidArgument(f"{field} has dimension {len(values)}, expected {dimension}")
    arr = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidArgument(f"{field} holds a non-finite value at index {bad}")
    norm = float(np.linalg.norm(arr.astype(np.float64)))
    if not math.isfinite(norm) or abs(norm - 1.0) > NORM_TOLERANCE:
        raise InvalidArgument(f"{field} is not L2-normalised (norm {norm:.4f}, expected 1)")
    return arr / np.float32(norm)
