"""Opaque ListSubjects page tokens: the last subject key of the previous page.

Keys are ``<watchlist>/<subject_id>``; the decoded token is validated against that shape before it
enters a Milvus expression, so a forged token cannot inject anything.
"""

from __future__ import annotations

import base64
import binascii
import re

from services.runtime.errors import InvalidArgument

_KEY = re.compile(r"^[a-z0-9_]{1,64}/[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_PREFIX = "k1:"


def encode_page_token(last_key: str) -> str:
    return base64.urlsafe_b64encode((_PREFIX + last_key).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token is not a token this service issued") from None
    if not raw.startswith(_PREFIX) or not _KEY.match(raw[len(_PREFIX) :]):
        raise InvalidArgument("page_token is not a token this service issued")
    return raw[len(_PREFIX) :]
