"""facegate client SDK: plain functions over the gateway and services' gRPC APIs.

Generated protocol stubs live in ``facegate.v1`` (made by ``make proto``; never edited).
"""

from __future__ import annotations

from facegate.client import health_check, wait_until_serving

__all__ = ["health_check", "wait_until_serving"]
