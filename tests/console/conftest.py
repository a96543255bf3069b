"""The console on loopback in front of the gateway tests' real stack (tests/gateway/conftest.py):
uvicorn serving the real app on a free port, and a logged-in HTTP client per role."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.gateway.conftest import stack  # noqa: F401  (the same real stack, shared by these tests)
from tests.support import free_ports


@dataclass
class Console:
    url: str
    stack: object  # tests.gateway.conftest.Stack
    records: list[logging.LogRecord]  # every log record the console wrote

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, follow_redirects=False)

    def login(self, key: str) -> tuple[httpx.Client, dict]:
        """A client logged in with ``key`` and its /api/me answer (csrf, role, key id)."""
        client = self.client()
        reply = login(client, key)
        assert reply.status_code == 200, reply.text
        return client, reply.json()


def login_token(client: httpx.Client) -> str:
    page = client.get("/login")
    return re.search(r'name="fg-login-csrf" content="([^"]+)"', page.text).group(1)


def login(client: httpx.Client, key: str) -> httpx.Response:
    token = login_token(client)
    return client.post("/api/login", json={"key": key}, headers={"X-CSRF-Token": token})


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def running_console(settings) -> Iterator[str]:
    """The real app under uvicorn on ``settings.port`` (loopback) until the block ends; its URL."""
    import uvicorn

    from console.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_config=None, access_log=False
        )
    )
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the console did not start"
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def console(stack) -> Iterator[Console]:  # noqa: F811
    from console.config import ConsoleSettings

    (port,) = free_ports(1)
    settings = ConsoleSettings(gateway_target=stack.target, port=port, poll_interval_s=0.2)
    keep = _Keep()
    logger = logging.getLogger("facegate.console")
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        with running_console(settings) as url:
            yield Console(url, stack, keep.records)
    finally:
        logger.removeHandler(keep)


@pytest.fixture(scope="session")
def logged_in(console: Console) -> Callable[[str], tuple[httpx.Client, dict]]:
    """role -> (client, me), one session per role for the whole run."""
    sessions: dict[str, tuple[httpx.Client, dict]] = {}

    def get(role: str) -> tuple[httpx.Client, dict]:
        if role not in sessions:
            sessions[role] = console.login(console.stack.keys[role])
        return sessions[role]

    yield get
    for client, _ in sessions.values():
        client.close()
