"""One dependency direction, checked on the import graph (every import statement, lazy ones too).

* The client layer (``facegate/``: SDK, pipeline, CLI, launcher) imports no service and no gateway
  code: it talks to them over gRPC, and so stays free of TensorFlow and Milvus.
* A service imports the shared runtime and the client layer, never another service, the gateway,
  or the client's CLI and launcher.
* The gateway is a service like the others: runtime and client layer only.
* The web console is a client of the gateway: the client layer only (never gateway or service code,
  so it cannot decide or check roles itself), and nothing imports the console.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

SERVICES = sorted(p.name for p in (REPO / "services").iterdir() if (p / "__init__.py").exists())
CLIENT_SIDE_ONLY = ("facegate.cli", "facegate.commands", "facegate.launcher")


def python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if "v1" not in path.relative_to(REPO).parts:  # generated stubs
            yield path


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def violations(folder: Path, forbidden) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in python_files(folder)
        for line, module in imported_modules(path)
        if forbidden(module)
    ]


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_is_read_from_real_files() -> None:
    """Guards the checks below against passing on an empty tree."""
    assert {"detection", "embedding", "watchlist", "docverify", "runtime"} <= set(SERVICES)
    docverify = {m for _, m in imported_modules(REPO / "services/docverify/server.py")}
    assert {"facegate.pipeline", "services.runtime.server"} <= docverify
    # A lazy import inside a function counts as well.
    assert "facegate.thresholds" in {m for _, m in imported_modules(REPO / "facegate/commands/eval.py")}


def test_the_client_layer_imports_no_service_or_gateway_code() -> None:
    assert (
        violations(
            REPO / "facegate", lambda m: _under(m, "services") or _under(m, "gateway") or _under(m, "console")
        )
        == []
    )


def test_the_console_imports_only_the_client_layer() -> None:
    """Starlette and the like are fine; of this project only ``facegate`` and ``console`` itself."""
    ours = ("facegate", "services", "gateway", "console", "tools", "bench", "tests")

    def forbidden(module: str) -> bool:
        if any(_under(module, p) for p in CLIENT_SIDE_ONLY):
            return True
        return any(_under(module, p) for p in ours) and not (
            _under(module, "facegate") or _under(module, "console")
        )

    assert {m for _, m in imported_modules(REPO / "console/login.py")} >= {"facegate.gateway_client"}
    assert violations(REPO / "console", forbidden) == []
    for folder in ("services", "gateway"):
        assert violations(REPO / folder, lambda m: _under(m, "console")) == [], folder


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_itself_the_runtime_and_the_client_layer(service: str) -> None:
    def forbidden(module: str) -> bool:
        if _under(module, "gateway") or any(_under(module, p) for p in CLIENT_SIDE_ONLY):
            return True
        if not _under(module, "services"):
            return False
        return not (_under(module, f"services.{service}") or _under(module, "services.runtime"))

    assert violations(REPO / "services" / service, forbidden) == []


def test_the_runtime_imports_no_service() -> None:
    def forbidden(module: str) -> bool:
        return _under(module, "services") and not _under(module, "services.runtime")

    assert violations(REPO / "services" / "runtime", forbidden) == []


def test_the_gateway_imports_no_service_but_the_runtime() -> None:
    def forbidden(module: str) -> bool:
        if any(_under(module, p) for p in CLIENT_SIDE_ONLY):
            return True
        return _under(module, "services") and not _under(module, "services.runtime")

    assert violations(REPO / "gateway", forbidden) == []
