"""facegate client SDK: ``Gateway`` for kiosks, officers and admins (facegate.gateway_client); a
``Client`` and plain functions over the services' gRPC APIs (facegate.api).

Generated protocol stubs live in ``facegate.v1`` (made by ``make proto``; never edited).
"""

from __future__ import annotations

from facegate.client import health_check, wait_until_serving

__all__ = [
    "Client",
    "Gateway",
    "compare_faces",
    "detect_faces",
    "face_embeddings",
    "face_encodings",
    "face_locations",
    "health_check",
    "search_watchlists",
    "verify_document",
    "wait_until_serving",
]


def __getattr__(name: str):
    # The API functions import the generated stubs; load them lazily so `import facegate`
    # works before `make proto` (e.g. for `facegate.endpoints` during setup).
    if name == "Gateway":
        from facegate.gateway_client import Gateway

        return Gateway
    if name in __all__:
        from facegate import api

        return getattr(api, name)
    raise AttributeError(name)
