"""API keys for the gateway: stored only as hashes, looked up in constant time, reloaded live.

Key format
    ``fg_<key_id>_<secret>``: ``key_id`` is ``<role>-<8 hex>`` (letters, digits and ``-``, never
    ``_``), ``secret`` is ``secrets.token_urlsafe(32)`` (256 random bits). The key id is not
    secret: it names the key in the audit trail and lets a lookup go straight to one entry
    instead of hashing against every stored key.

Key file (JSON, written by :func:`generate_dev_keys` and the CLI below)::

    {
      "version": 1,
      "keys": [
        {"key_id": "kiosk-1a2b3c4d", "role": "kiosk",
         "sha256": "<64 hex digits: SHA-256 of the whole key string>",
         "revoked": false, "created": "2025-01-31T12:00:00Z", "note": "dev key (make run)"}
      ]
    }

    ``role`` is one of ``kiosk``, ``officer``, ``admin``, ``ops``; ``note`` is optional. The file
    may be a Kubernetes Secret mounted as a file (its symlink swap is seen like any other change).

Why plain SHA-256 and not a salted or peppered HMAC: salts and slow hashes protect *guessable*
secrets (passwords) from dictionary attacks. These secrets are 256 random bits, so a leaked key
file cannot be reversed by guessing, with or without a salt; a pepper would only add a second
secret to distribute and rotate. The hash covers the whole key (prefix and key id too), so a
secret cannot be moved under another key id.

Revocation takes effect without a restart: :class:`KeyRing` checks the file's mtime, size and inode
at most once per ``check_interval`` seconds and reloads when they change. A file that no longer
parses keeps the last good ring (a half-written file is transient; this module's own writers
replace the file atomically) and logs an error; a file that was deleted empties the ring (every
key refused: deleting the file is a deliberate lock-out, and failing closed is the safe reading).

Keys never reach a log, a metric or an exception message; only key ids do.

CLI (prints a new key once, stores only its hash)::

    python -m gateway.keys add --role officer --key-file var/gateway-keys.json [--note TEXT]
    python -m gateway.keys revoke KEY_ID --key-file var/gateway-keys.json
    python -m gateway.keys list --key-file var/gateway-keys.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("facegate.gateway.keys")

ROLES: tuple[str, ...] = ("kiosk", "officer", "admin", "ops")
KEY_PREFIX = "fg_"
FILE_VERSION = 1
MAX_KEY_LENGTH = 256  # longer bearer tokens are refused before hashing
DEV_NOTE = "dev key (make run)"

_KEY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: Hashed when the key id is unknown, so unknown and known ids cost the same comparison.
_DUMMY_HASH = "0" * 64


class KeyFileError(Exception):
    """The key file is missing or malformed. The message names the file and field, never a hash."""


@dataclass(frozen=True)
class KeyEntry:
    """One stored key: its id, role and hash, never the key itself."""

    key_id: str
    role: str
    sha256: str
    revoked: bool = False
    created: str = ""
    note: str = ""


@dataclass(frozen=True)
class Lookup:
    """What a presented key turned out to be; ``reason`` feeds the auth-failure metric."""

    entry: KeyEntry | None  # the matched entry (also when revoked); None for an unknown key
    reason: str  # "ok", "unknown_key" or "revoked_key"

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def hash_key(key: str) -> str:
    """Hex SHA-256 of the whole key string (see the module docstring for why no salt)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The key id inside ``fg_<key_id>_<secret>``, or None when the key has another shape."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or not _KEY_ID.fullmatch(key_id):
        return None
    return key_id


def new_key(role: str, note: str = "") -> tuple[str, KeyEntry]:
    """A fresh key for ``role`` and the entry that stores its hash. Show the key once, keep the entry."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    key_id = f"{role}-{secrets.token_hex(4)}"
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, KeyEntry(key_id, role, hash_key(key), False, _utc_now(), note)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- key file ---------------------------------------------------------------------------------


def read_key_file(path: Path) -> list[KeyEntry]:
    """Parse and validate a key file; raises KeyFileError naming what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"key file {path} is not readable JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
        raise KeyFileError(f'key file {path}: expected an object with "version": {FILE_VERSION}')
    raw = data.get("keys")
    if not isinstance(raw, list):
        raise KeyFileError(f'key file {path}: "keys" must be a list')
    entries = [_parse_entry(path, i, item) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for entry in entries:
        if entry.key_id in seen:
            raise KeyFileError(f"key file {path}: key id {entry.key_id} appears twice")
        seen.add(entry.key_id)
    return entries


def _parse_entry(path: Path, index: int, item: object) -> KeyEntry:
    where = f"key file {path}, keys[{index}]"
    if not isinstance(item, dict):
        raise KeyFileError(f"{where}: must be an object")
    key_id, role, digest = item.get("key_id"), item.get("role"), item.get("sha256")
    revoked, created, note = item.get("revoked", False), item.get("created", ""), item.get("note", "")
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise KeyFileError(f"{where}: key_id must match {_KEY_ID.pattern}")
    if role not in ROLES:
        raise KeyFileError(f"{where} ({key_id}): role must be one of {', '.join(ROLES)}")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise KeyFileError(f"{where} ({key_id}): sha256 must be 64 lower-case hex digits")
    if not isinstance(revoked, bool):
        raise KeyFileError(f"{where} ({key_id}): revoked must be true or false")
    if not isinstance(created, str) or not isinstance(note, str):
        raise KeyFileError(f"{where} ({key_id}): created and note must be strings")
    return KeyEntry(key_id, role, digest, revoked, created, note)


def write_key_file(path: Path, entries: Iterable[KeyEntry]) -> None:
    """Replace the key file atomically (mode 0600), so a reader never sees half a file."""
    body = {"version": FILE_VERSION, "keys": [dataclasses.asdict(e) for e in entries]}
    _write_private(Path(path), json.dumps(body, indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a 0600 temp file beside ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def add_key(path: Path, role: str, note: str = "") -> tuple[str, KeyEntry]:
    """Create a key, store its hash in ``path`` (created when missing) and return the plain key."""
    entries = read_key_file(path) if Path(path).exists() else []
    key, entry = new_key(role, note)
    write_key_file(path, [*entries, entry])
    return key, entry


def revoke_key(path: Path, key_id: str) -> KeyEntry:
    """Mark ``key_id`` revoked in ``path``; a running KeyRing refuses it after its next check."""
    entries = read_key_file(path)
    if not any(e.key_id == key_id for e in entries):
        raise KeyFileError(f"key file {path}: no key with id {key_id}")
    updated = [dataclasses.replace(e, revoked=True) if e.key_id == key_id else e for e in entries]
    write_key_file(path, updated)
    return next(e for e in updated if e.key_id == key_id)


# ---- the ring the interceptor asks ------------------------------------------------------------


class KeyRing:
    """The keys of one key file, reloaded when the file changes.

    ``check_interval`` bounds how often the file is stat'ed (one ``stat`` per interval, not per
    call); a revocation is seen within that interval. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._entries = self._index(read_key_file(self.path))  # a bad file at start is a config error
        self._checked_at = clock()

    def lookup(self, presented_key: str) -> KeyEntry | None:
        """The entry of an active key, or None (unknown, malformed or revoked)."""
        found = self.identify(presented_key)
        return found.entry if found.ok else None

    def identify(self, presented_key: str) -> Lookup:
        """Like :meth:`lookup`, but says why a key was refused (for metrics and audit).

        Only ``reason == "ok"`` means accept. For a revoked key ``entry`` is still the matched
        entry, so a refusal can name the key id and role it came from; for an unknown key it is None.
        """
        self._maybe_reload()
        key_id = key_id_of(presented_key)
        entry = self._entries.get(key_id) if key_id else None
        expected = entry.sha256 if entry else _DUMMY_HASH
        matches = hmac.compare_digest(hash_key(presented_key[:MAX_KEY_LENGTH]), expected)
        if entry is None or not matches:
            return Lookup(None, "unknown_key")
        return Lookup(entry, "revoked_key" if entry.revoked else "ok")

    def entries(self) -> list[KeyEntry]:
        """Every stored entry (hashes included; for tools, never for logs)."""
        self._maybe_reload()
        return list(self._entries.values())

    # -- reload --

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked_at < self.check_interval:
            return
        with self._lock:
            if now - self._checked_at < self.check_interval:
                return  # another thread just checked
            self._checked_at = now
            signature = self._stat()
            if signature == self._signature:
                return
            self._signature = signature
            self._reload(signature)

    def _reload(self, signature: tuple[int, int, int] | None) -> None:
        if signature is None:
            self._entries = {}
            log.error("key file missing; refusing every key until it returns", extra={"path": str(self.path)})
            return
        try:
            entries = read_key_file(self.path)
        except KeyFileError as exc:
            log.error("key file invalid; keeping the last good keys", extra={"error": str(exc)})
            return
        self._entries = self._index(entries)
        log.info(
            "key file reloaded",
            extra={"keys": len(entries), "revoked": sum(e.revoked for e in entries)},
        )

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the symlinks of a mounted Secret
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @staticmethod
    def _index(entries: Iterable[KeyEntry]) -> dict[str, KeyEntry]:
        return {e.key_id: e for e in entries}


# ---- development keys for `make run` ----------------------------------------------------------


def env_var(role: str) -> str:
    """The variable the dev env file holds ``role``'s key in, e.g. FACEGATE_KIOSK_KEY."""
    return f"FACEGATE_{role.upper()}_KEY"


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an env file (blank lines and ``#`` comments skipped)."""
    values: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def generate_dev_keys(key_file: Path, env_file: Path) -> dict[str, str]:
    """One key per role for `make run`: reuse the ones in ``env_file`` while they still work.

    Returns ``{"FACEGATE_KIOSK_KEY": key, ...}``. The keys are reused when both files exist and
    every key in the env file is active in the key file with its role. Otherwise new keys are
    made: earlier dev keys in the key file are revoked (their plain text is gone or stale), other
    keys (added with the CLI) are kept, only hashes go to ``key_file`` and the plain keys go to
    ``env_file``; both files are mode 0600. A key file that exists but does not parse raises
    KeyFileError rather than being overwritten.
    """
    key_file, env_file = Path(key_file), Path(env_file)
    existing = read_key_file(key_file) if key_file.exists() else []
    if existing and env_file.exists():
        current = read_env_file(env_file)
        if _dev_keys_work(current, existing):
            return {env_var(role): current[env_var(role)] for role in ROLES}
    kept = [dataclasses.replace(e, revoked=True) if e.note == DEV_NOTE else e for e in existing]
    made = {role: new_key(role, DEV_NOTE) for role in ROLES}
    write_key_file(key_file, [*kept, *(entry for _, entry in made.values())])
    plain = {env_var(role): key for role, (key, _) in made.items()}
    _write_private(env_file, _env_text(plain))
    log.info("generated dev keys", extra={"key_ids": [entry.key_id for _, entry in made.values()]})
    return plain


def _dev_keys_work(current: dict[str, str], entries: Sequence[KeyEntry]) -> bool:
    by_id = {e.key_id: e for e in entries}
    for role in ROLES:
        key = current.get(env_var(role), "")
        entry = by_id.get(key_id_of(key) or "")
        if entry is None or entry.revoked or entry.role != role:
            return False
        if not hmac.compare_digest(hash_key(key), entry.sha256):
            return False
    return True


def _env_text(plain: dict[str, str]) -> str:
    lines = [
        "# facegate development API keys, generated by `make run` on first start.",
        "# Plain keys: keep this file private (mode 0600) and never commit it.",
        *(f"{name}={key}" for name, key in plain.items()),
    ]
    return "\n".join(lines) + "\n"


# ---- CLI --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.keys add|revoke|list|dev``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m gateway.keys", description="Manage gateway API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a key, print it once, store only its hash")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--note", default="")
    revoke = sub.add_parser("revoke", help="revoke a key by id (running gateways see it within a second)")
    revoke.add_argument("key_id")
    listing = sub.add_parser("list", help="key ids, roles and states (no hashes)")
    dev = sub.add_parser(
        "dev", help="make run: one key per role, plain keys to --env-file (reused while valid)"
    )
    dev.add_argument("--env-file", required=True, type=Path)
    for p in (add, revoke, listing, dev):
        p.add_argument("--key-file", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            key, entry = add_key(args.key_file, args.role, args.note)
            print(key)
            print(
                f"stored the hash of {entry.key_id} ({entry.role}); the key is shown only once",
                file=sys.stderr,
            )
        elif args.command == "dev":
            generate_dev_keys(args.key_file, args.env_file)
            print(f"dev keys in {args.env_file}")
        elif args.command == "revoke":
            entry = revoke_key(args.key_file, args.key_id)
            print(f"revoked {entry.key_id} ({entry.role})")
        else:
            for e in read_key_file(args.key_file):
                state = "revoked" if e.revoked else "active"
                print(f"{e.key_id}\t{e.role}\t{state}\t{e.created}\t{e.note}")
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
