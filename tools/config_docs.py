"""Configuration tables generated from the settings classes (`make docs`; checked by tests).

Every environment variable a server reads is a field of a pydantic-settings class. This module
renders each class as a markdown table (variable, default, allowed values, meaning from the
field's ``description``) and writes it between marker comments in README.md and docs/*.md::

    <!-- config:detection:start ... -->
    ...generated...
    <!-- config:detection:end -->

so a default changed in code changes the docs with it, and tests/test_config_docs.py fails when
the committed tables differ from what the code says. Edit the ``Field(description=...)`` text,
not the tables. Secret-looking fields never show their default.

Run: ``python -m tools.config_docs`` (rewrite) or ``python -m tools.config_docs --check``.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import AliasChoices, AliasPath, SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[1]
README = "README.md"

#: Field names that hold credentials: their defaults are never printed.
SECRET_HINTS = ("token", "password", "secret", "key")


@dataclass(frozen=True)
class Settings:
    """One settings class and the files that carry its table."""

    name: str  # marker name
    target: str  # "module:Class"
    files: tuple[str, ...]

    def load(self) -> type[BaseSettings]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)

    @property
    def source(self) -> str:
        return self.target.partition(":")[0].replace(".", "/") + ".py"


#: Every settings class, in README order. tests/test_config_docs.py checks none is missing.
SETTINGS = (
    Settings("runtime", "services.runtime.config:RuntimeSettings", (README,)),
    Settings("gateway", "gateway.config:GatewaySettings", (README,)),
    Settings("detection", "services.detection.config:DetectionSettings", (README, "docs/detection.md")),
    Settings("embedding", "services.embedding.config:EmbeddingSettings", (README, "docs/embedding.md")),
    Settings("watchlist", "services.watchlist.config:WatchlistSettings", (README, "docs/watchlist.md")),
    Settings("docverify", "services.docverify.config:DocverifySettings", (README, "docs/docverify.md")),
    Settings("console", "console.config:ConsoleSettings", ("docs/console.md",)),
)

# ---- values -------------------------------------------------------------------------------------


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _value(value: Any) -> str:
    """A default or bound as a user would type it into the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, enum.Enum):
        return _value(value.value)
    if isinstance(value, Path):
        return _path(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value)
    text = str(value)
    if text.startswith(str(REPO)):
        return _path(Path(text))
    return text


def _path(path: Path) -> str:
    try:
        return "<repo>/" + path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    """Prose for a table cell: one line, pipes escaped, and outside `code` no stray HTML or emphasis."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace("*", "\\*")
    return "`".join(parts)


# ---- one field ----------------------------------------------------------------------------------


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)) and len(args) == 1:
            return args[0], True
    return annotation, False


def _is_secret(name: str, annotation: Any) -> bool:
    inner, _ = _unwrap_optional(annotation)
    return inner in (SecretStr, SecretBytes) or any(hint in name.lower() for hint in SECRET_HINTS)


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set ``field``, the one that wins first."""
    alias = field.validation_alias or field.alias
    if alias is None:
        prefix = cls.model_config.get("env_prefix", "") or ""
        return [f"{prefix}{name}".upper()]
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = []
    for choice in choices:
        if isinstance(choice, AliasPath):
            choice = str(choice.path[0])
        names.append(str(choice).upper())
    return names


def _default(name: str, field: FieldInfo) -> str:
    if _is_secret(name, field.annotation):
        return "*(secret: not shown)*"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "*(required)*"
    else:
        value = field.default
    if value is None:
        return "*unset*"
    if isinstance(value, SecretStr | SecretBytes):
        return "*(secret: not shown)*"
    text = _value(value)
    return "*empty*" if text == "" else _code(text)


def _allowed(field: FieldInfo) -> str:
    annotation, optional = _unwrap_optional(field.annotation)
    parts: list[str] = []
    if typing.get_origin(annotation) is Literal:
        parts.append(", ".join(_code(_value(a)) for a in typing.get_args(annotation)))
    elif annotation is bool:
        parts.append("`true`, `false`")
    elif typing.get_origin(annotation) is dict or annotation is dict:
        parts.append("JSON object")
    elif isinstance(annotation, type) and issubclass(annotation, Path):
        parts.append("path")
    elif annotation in (str, SecretStr) and not field.metadata:
        parts.append("text")
    lower = upper = None
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            lower = f"≥ {_value(meta.ge)}"
        elif isinstance(meta, annotated_types.Gt):
            lower = f"> {_value(meta.gt)}"
        elif isinstance(meta, annotated_types.Le):
            upper = f"≤ {_value(meta.le)}"
        elif isinstance(meta, annotated_types.Lt):
            upper = f"< {_value(meta.lt)}"
        elif isinstance(meta, annotated_types.MinLen) and meta.min_length > 0:
            parts.append("non-empty" if meta.min_length == 1 else f"≥ {meta.min_length} characters")
        elif isinstance(meta, annotated_types.MaxLen):
            parts.append(f"≤ {meta.max_length} characters")
        elif getattr(meta, "pattern", None):
            parts.append(_code(meta.pattern))
    if lower and upper and lower.startswith("≥") and upper.startswith("≤"):
        parts.append(f"{lower[2:]} to {upper[2:]}")
    else:
        parts.extend(b for b in (lower, upper) if b)
    text = "; ".join(parts)
    if optional:
        text = f"unset or {text}" if text else "unset or a value"
    return text


def rows(cls: type[BaseSettings]) -> Iterator[tuple[str, str, str, str]]:
    """(variable, default, allowed, meaning) per field; a field without a description is an error."""
    for name, field in cls.model_fields.items():
        names = env_names(cls, name, field)
        if not field.description:
            raise SystemExit(
                f"config_docs: {cls.__module__}.{cls.__name__}.{name} ({names[0]}) has no "
                "Field(description=...): add one, the docs table is made from it"
            )
        variable = _code(names[0])
        if len(names) > 1:
            variable += (
                " or " + " or ".join(_code(n) for n in names[1:]) + " (if both are set, the first wins)"
            )
        yield variable, _default(name, field), _allowed(field), _cell(field.description)


def table(cls: type[BaseSettings]) -> str:
    lines = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows(cls)]
    return "\n".join(lines)


# ---- docverify: gate policy vs portrait policy ------------------------------------------------

#: What detection measured on the 25 specimen document portraits (docs/docverify.md, "Portrait
#: quality"). Data, not configuration: the two policy columns come from the settings classes.
PORTRAIT_POLICY_ROWS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    # measure, specimens (min-max), detection fields (min, max), docverify fields (min, max)
    ("inter-eye px", "23-86", ("q_min_inter_eye_px", ""), ("portrait_min_inter_eye_px", "")),
    ("\\|yaw\\| °", "0-5 (US border card: 17)", ("", "q_max_yaw_deg"), ("", "portrait_max_yaw_deg")),
    ("\\|roll\\| °", "0-3", ("", "q_max_roll_deg"), ("", "portrait_max_roll_deg")),
    ("\\|pitch\\| °", "0-25 (median 8)", ("", "q_max_pitch_deg"), ("", "")),
    (
        "sharpness (Laplacian var., 64 px patch)",
        "1,884-20,763",
        ("q_min_sharpness", ""),
        ("portrait_min_sharpness", ""),
    ),
    (
        "brightness",
        "104-179",
        ("q_min_brightness", "q_max_brightness"),
        ("portrait_min_brightness", "portrait_max_brightness"),
    ),
    ("contrast", "24-58", ("q_min_contrast", ""), ("portrait_min_contrast", "")),
    ("detector confidence", "0.8-1.0", ("q_min_confidence", ""), ("portrait_min_confidence", "")),
)


def _bound(cls: type[BaseSettings], fields: tuple[str, ...]) -> str:
    lo, hi = (cls.model_fields[f].default if f else None for f in fields)
    if lo is not None and hi is not None:
        return f"{_value(lo)}-{_value(hi)}"
    if lo is not None:
        return f"≥ {_value(lo)}"
    if hi is not None:
        return f"≤ {_value(hi)}"
    return "not bounded"


def portrait_policy_table() -> str:
    from services.detection.config import DetectionSettings
    from services.docverify.config import DocverifySettings

    lines = [
        "| measure | specimens (min-max) | gate policy (detection) | portrait policy |",
        "|---|---|---|---|",
    ]
    for measure, specimens, gate, portrait in PORTRAIT_POLICY_ROWS:
        lines.append(
            f"| {measure} | {specimens} | {_bound(DetectionSettings, gate)} | "
            f"{_bound(DocverifySettings, portrait)} |"
        )
    return "\n".join(lines)


# ---- the marked blocks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    name: str
    files: tuple[str, ...]
    source: str  # what the block is generated from, named in the start marker
    render: Callable[[], str]


def blocks() -> list[Block]:
    out = [Block(s.name, s.files, f"{s.source} ({s.target.partition(':')[2]})", _render(s)) for s in SETTINGS]
    out.append(
        Block(
            "docverify-portrait-policy",
            ("docs/docverify.md",),
            "services/detection/config.py and services/docverify/config.py",
            portrait_policy_table,
        )
    )
    return out


def _render(settings: Settings) -> Callable[[], str]:
    return lambda: table(settings.load())


_MARKER = re.compile(
    r"^<!-- config:(?P<name>[a-z0-9-]+):start\b.*?-->\n(?P<body>.*?)^<!-- config:(?P=name):end -->$",
    re.M | re.S,
)


def start_marker(block: Block) -> str:
    return f"<!-- config:{block.name}:start (generated by `make docs` from {block.source}; do not edit) -->"


def render_file(path: str, text: str, rendered: dict[str, str]) -> str:
    """``text`` with every marked block of ``path`` replaced by its generated table."""
    wanted = {b.name for b in blocks() if path in b.files}
    found: set[str] = set()
    by_name = {b.name: b for b in blocks()}

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in by_name:
            raise SystemExit(f"config_docs: {path} has a block for unknown settings {name!r}")
        found.add(name)
        return f"{start_marker(by_name[name])}\n{rendered[name]}\n<!-- config:{name}:end -->"

    out = _MARKER.sub(replace, text)
    missing = wanted - found
    if missing:
        raise SystemExit(
            f"config_docs: {path} lacks the marker pair for {sorted(missing)}: add "
            f"'<!-- config:NAME:start -->' and '<!-- config:NAME:end -->' lines where the table goes"
        )
    return out


def generate() -> dict[str, tuple[str, str]]:
    """{path: (committed text, generated text)} for every file that carries a table."""
    rendered = {b.name: b.render() for b in blocks()}
    paths = sorted({f for b in blocks() for f in b.files})
    out = {}
    for path in paths:
        text = (REPO / path).read_text()
        out[path] = (text, render_file(path, text, rendered))
    return out


def first_difference(old: str, new: str) -> tuple[int, str, str]:
    """(1-based line number, committed line, generated line) of the first line that differs."""
    a, b = old.splitlines(), new.splitlines()
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else "<end of file>"
        right = b[i] if i < len(b) else "<end of file>"
        if left != right:
            return i + 1, left, right
    return 0, "", ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the configuration tables in README and docs.")
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = 0
    for path, (old, new) in generate().items():
        if old == new:
            continue
        if args.check:
            line, committed, generated = first_difference(old, new)
            print(f"{path}:{line}: committed {committed!r}, generated {generated!r}", file=sys.stderr)
            stale += 1
        else:
            (REPO / path).write_text(new)
            print(f"config_docs: rewrote {path}")
    if stale:
        print("config_docs: run `make docs` to regenerate the tables", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
