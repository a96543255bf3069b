"""Audit trail: hash chain across restarts, tamper detection naming the right record, privacy
allow-list, concurrent appends, write failures, and the `facegate audit` CLI."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from facegate import audit as fmt
from facegate.cli import main as cli_main
from gateway import metrics
from gateway.audit import (
    AuditChainError,
    AuditLogInUseError,
    AuditWriteError,
    FileAuditStore,
)


def body(i: int, outcome: str = "ACCEPT", **extra: object) -> dict[str, object]:
    """A realistic decision body: ids, codes, scores; nothing personal."""
    return {
        "decision_id": f"d-{i:05d}",
        "request_id": f"r-{i:05d}",
        "caller": "kiosk-key-1",
        "role": "kiosk",
        "gate_id": "gate-7",
        "operation": "VerifyTraveller",
        "watchlists": ["wanted"],
        "outcome": outcome,
        "reasons": [{"code": "MATCH", "message": "live face matches the document portrait"}],
        "scores": [{"name": "document_similarity", "value": 0.71, "threshold": 0.5089, "target_far": 0.001}],
        "model_version": "6acdd8fb",
        **extra,
    }


def fill(path: Path, n: int) -> list[dict]:
    with FileAuditStore(path) as store:
        return [store.append(body(i)) for i in range(1, n + 1)]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


# --- chain --------------------------------------------------------------------------------------


def test_chain_survives_a_restart(tmp_path):
    path = tmp_path / "audit" / "audit.log"
    first = fill(path, 30)
    with FileAuditStore(path) as store:
        assert store.head() == (30, first[-1]["hash"])
        more = [store.append(body(i)) for i in range(31, 61)]
        assert store.get("d-00005") == first[4]  # index rebuilt from the file
    assert more[0]["prev_hash"] == first[-1]["hash"]
    assert [r["seq"] for r in fmt.read_records(path)] == list(range(1, 61))
    result = fmt.verify_log(path)
    assert result.ok and result.records == 60 and result.last_hash == more[-1]["hash"]
    assert first[0]["prev_hash"] == fmt.GENESIS_HASH
    assert fmt.find_record(path, "d-00042") == more[11]


def test_record_is_canonical_and_hash_covers_everything_but_itself(tmp_path):
    path = tmp_path / "a.log"
    record = fill(path, 1)[0]
    line = lines_of(path)[0]
    assert line == fmt.canonical(record) + b"\n"
    assert record["hash"] == fmt.record_hash(record)
    assert record["time"].endswith("Z") and record["time"][10] == "T"
    assert fmt.record_hash({**record, "outcome": "REFER"}) != record["hash"]


def _edit(lines, i):
    rec = json.loads(lines[i])
    rec["outcome"] = "REFER"
    lines[i] = fmt.canonical(rec) + b"\n"


def _edit_and_rehash(lines, i):
    rec = json.loads(lines[i])
    rec["outcome"] = "REFER"
    rec["hash"] = fmt.record_hash(rec)
    lines[i] = fmt.canonical(rec) + b"\n"


def _reformat(lines, i):
    lines[i] = json.dumps(json.loads(lines[i]), indent=1).replace("\n", " ").encode() + b"\n"


def _swap(lines, i):
    lines[i], lines[i + 1] = lines[i + 1], lines[i]


def _insert_garbage(lines, i):
    lines.insert(i, b'{"seq": 3, "not json\n')


# (name, change to the 0-based line list, expected 1-based broken line, its decision id, reason part)
TAMPERING = [
    ("edited", _edit, 10, "d-00010", "hash mismatch: record was edited"),
    ("edited and rehashed", _edit_and_rehash, 11, "d-00011", "prev_hash does not match the record before"),
    ("reformatted", _reformat, 10, "d-00010", "not in canonical form"),
    ("deleted", lambda lines, i: lines.pop(i), 10, "d-00011", "record(s) 10..10 were deleted"),
    ("first deleted", lambda lines, i: lines.pop(0), 1, "d-00002", "record(s) 1..1 were deleted"),
    ("swapped", _swap, 10, "d-00011", "seq 10 is at line 11: records were reordered"),
    ("garbage line", _insert_garbage, 10, None, "not valid JSON"),
    ("truncated last line", lambda lines, i: lines.__setitem__(-1, lines[-1][:40]), 20, None, "truncated"),
    ("blank line", lambda lines, i: lines.insert(i, b"\n"), 10, None, "empty line"),
]


@pytest.mark.parametrize(
    ("change", "line", "decision_id", "why"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_verify_names_the_first_broken_record(tmp_path, change, line, decision_id, why):
    path = tmp_path / "audit.log"
    fill(path, 20)
    lines = lines_of(path)
    change(lines, 9)
    result = fmt.verify_log(write_lines(tmp_path / "tampered.log", lines))
    assert not result.ok
    assert (result.line, result.decision_id) == (line, decision_id), result
    assert why in result.reason
    assert result.records == line - 1
    assert result.last_hash == (json.loads(lines[line - 2])["hash"] if line > 1 else fmt.GENESIS_HASH)


def test_empty_log_verifies_and_a_missing_one_raises(tmp_path):
    (tmp_path / "empty.log").write_bytes(b"")
    assert fmt.verify_log(tmp_path / "empty.log") == fmt.VerifyResult(True, 0, fmt.GENESIS_HASH)
    with pytest.raises(FileNotFoundError):
        fmt.verify_log(tmp_path / "absent.log")


# --- the store refuses a broken chain ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["edited", "truncated last line"])
def test_store_refuses_to_start_on_a_broken_log_and_leaves_it_untouched(tmp_path, damage):
    path = tmp_path / "audit.log"
    fill(path, 12)
    lines = lines_of(path)
    if damage == "edited":
        _edit(lines, 4)
    else:
        lines[-1] = lines[-1][:30]  # a crash mid-append: still refused, an operator decides
    write_lines(path, lines)
    before = path.read_bytes()
    with pytest.raises(AuditChainError, match=r"broken at line (5|12) .*Refusing to append"):
        FileAuditStore(path)
    assert path.read_bytes() == before
    FileAuditStore(path.with_name("fresh.log")).close()  # the lock of the refused one was released


def test_a_second_writer_is_refused(tmp_path):
    path = tmp_path / "audit.log"
    with FileAuditStore(path) as store:
        store.append(body(1))
        with pytest.raises(AuditLogInUseError):
            FileAuditStore(path)
    with FileAuditStore(path) as again:  # closing released the lock
        again.append(body(2))
    assert fmt.verify_log(path).ok


def test_default_path_is_under_facegate_var_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_VAR_DIR", str(tmp_path / "var"))
    with FileAuditStore() as store:
        store.append(body(1))
    assert store.path == tmp_path / "var" / "audit" / "audit.log"
    assert fmt.verify_log(store.path).records == 1
    assert (store.path.stat().st_mode & 0o777) == 0o600


# --- privacy: the allow-list ----------------------------------------------------------------------


FORBIDDEN = [
    {"image": "/9j/4AAQSkZJRgABAQ"},
    {"api_key": "sk-live-secret"},
    {"key": "sk-live-secret"},
    {"display_name": "Jane Doe"},
    {"name": "Jane Doe"},
    {"photo": b"\xff\xd8\xff"},
    {"reasons": [{"code": "NO_MATCH", "message": "x", "display_name": "Jane Doe"}]},
    {"candidates": [{"watchlist": "wanted", "subject_id": "s1", "score": 0.9, "name": "Jane Doe"}]},
    {"gate_id": b"gate-7"},
    {"gate_id": "x" * 5000},  # no room for an encoded image in an id field
    {"reasons": [{"code": "NO_MATCH", "message": "m" * 5000}]},
    {"scores": [{"name": "s", "value": float("nan"), "threshold": 0.5, "target_far": 0.001}]},
    {"watchlists": "wanted"},
    {"decision_id": ""},
]


@pytest.mark.parametrize("bad", FORBIDDEN, ids=lambda b: next(iter(b)))
def test_store_rejects_fields_off_the_allow_list_and_writes_nothing(tmp_path, bad):
    path = tmp_path / "audit.log"
    with FileAuditStore(path) as store:
        store.append(body(1))
        size = path.stat().st_size
        with pytest.raises(fmt.AuditFieldError) as err:
            store.append({**body(2), **bad})
        assert "Jane" not in str(err.value) and "secret" not in str(err.value)  # names the field only
        assert path.stat().st_size == size
        assert store.append(body(3))["seq"] == 2  # the chain goes on as if nothing happened
    assert fmt.verify_log(path).ok


def test_a_record_holds_only_allow_listed_fields(tmp_path):
    candidates = [{"watchlist": "wanted", "subject_id": "s-17", "score": 0.83}]
    timings = {"detect": 112.5, "embed": 80}
    with FileAuditStore(tmp_path / "a.log") as store:
        record = store.append(body(1, "REFER", candidates=candidates, timings_ms=timings, subject_id="s-17"))
    assert set(record) <= set(fmt._TOP_FIELDS) | set(fmt.CHAIN_FIELDS)
    assert record["timings_ms"] == {"detect": 112.5, "embed": 80.0}


def test_a_decision_id_is_recorded_once(tmp_path):
    with FileAuditStore(tmp_path / "a.log") as store:
        store.append(body(1))
        with pytest.raises(fmt.AuditFieldError, match="already recorded"):
            store.append(body(1))


# --- concurrency, lookups ----------------------------------------------------------------------


def test_concurrent_appends_from_eight_threads_keep_the_chain(tmp_path):
    path = tmp_path / "audit.log"
    per_thread = 40
    with FileAuditStore(path) as store:
        start = threading.Barrier(8)
        errors: list[BaseException] = []

        def work(t: int) -> None:
            start.wait()
            try:
                for i in range(per_thread):
                    store.append(body(t * 1000 + i))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert store.head()[0] == 8 * per_thread
        assert store.get("d-07039")["decision_id"] == "d-07039"
    result = fmt.verify_log(path)
    assert result.ok and result.records == 8 * per_thread


def test_get_and_recent(tmp_path):
    path = tmp_path / "audit.log"
    with FileAuditStore(path, recent_size=10) as store:
        for i in range(1, 16):
            store.append(body(i, "REFER" if i % 3 == 0 else "ACCEPT"))
        assert store.get("nope") is None
        refer = store.recent(outcome="REFER", limit=2)
        assert [r["decision_id"] for r in refer] == ["d-00015", "d-00012"]
        assert [r["decision_id"] for r in store.recent(limit=3)] == ["d-00015", "d-00014", "d-00013"]
        assert len(store.recent(limit=50)) == 10  # only the last recent_size are kept in memory
        refer[0]["outcome"] = "ACCEPT"  # callers get copies
        assert store.recent(outcome="REFER", limit=1)[0]["outcome"] == "REFER"
    with FileAuditStore(path, recent_size=10) as again:  # rebuilt at start
        assert [r["decision_id"] for r in again.recent(outcome="REFER")] == [
            "d-00015",
            "d-00012",
            "d-00009",
            "d-00006",
        ]
        assert again.get("d-00001")["seq"] == 1


def test_get_notices_a_record_changed_on_disk_after_start(tmp_path):
    path = tmp_path / "audit.log"
    with FileAuditStore(path) as store:
        store.append(body(1))
        data = path.read_bytes().replace(b'"ACCEPT"', b'"REFERS"')  # same length, in place
        with open(path, "r+b") as f:
            f.write(data)
        with pytest.raises(AuditChainError, match="changed after it was written"):
            store.get("d-00001")


# --- write failures -------------------------------------------------------------------------------


def test_a_failed_fsync_raises_rolls_back_and_the_next_append_continues(tmp_path, monkeypatch):
    path = tmp_path / "audit.log"
    real_fsync = os.fsync
    failures = iter([True])

    def flaky_fsync(fd: int) -> None:
        if next(failures, False):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    with FileAuditStore(path) as store:
        store.append(body(1))
        errors_before = metrics.AUDIT_WRITE_ERRORS._value.get()
        monkeypatch.setattr(os, "fsync", flaky_fsync)
        with pytest.raises(AuditWriteError, match="Input/output error"):
            store.append(body(2))
        assert metrics.AUDIT_WRITE_ERRORS._value.get() == errors_before + 1
        assert store.get("d-00002") is None
        assert store.append(body(3))["seq"] == 2
    result = fmt.verify_log(path)
    assert result.ok and result.records == 2


def test_when_rollback_fails_every_later_append_fails(tmp_path, monkeypatch):
    path = tmp_path / "audit.log"
    with FileAuditStore(path) as store:
        store.append(body(1))

        def broken(*_args: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken)
        monkeypatch.setattr(os, "ftruncate", broken)
        with pytest.raises(AuditWriteError, match="No space left"):
            store.append(body(2))
        monkeypatch.undo()
        with pytest.raises(AuditWriteError, match="unusable after an earlier failure"):
            store.append(body(3))
    with pytest.raises(AuditWriteError, match="closed"):
        store.append(body(4))


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_verify_ok(tmp_path, capsys):
    path = tmp_path / "audit.log"
    records = fill(path, 5)
    assert cli_main(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"OK: 5 records, last hash {records[-1]['hash']}"
    assert cli_main(["audit", "verify", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["records"] == 5 and out["file"] == str(path)


def test_cli_verify_broken(tmp_path, capsys):
    path = tmp_path / "audit.log"
    fill(path, 5)
    lines = lines_of(path)
    lines.pop(2)
    write_lines(path, lines)
    assert cli_main(["audit", "verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "line 3 (seq 4, decision d-00004)" in out and "deleted" in out
    assert cli_main(["audit", "verify", "--json", str(path)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["ok"], out["line"], out["seq"], out["decision_id"]) == (False, 3, 4, "d-00004")


def test_cli_verify_defaults_to_the_make_run_log_and_reports_a_missing_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEGATE_VAR_DIR", raising=False)
    assert cli_main(["audit", "verify"]) == 2
    assert "var/audit/audit.log" in capsys.readouterr().err
    fill(tmp_path / "var" / "audit" / "audit.log", 3)
    assert cli_main(["audit", "verify"]) == 0
    monkeypatch.setenv("FACEGATE_VAR_DIR", str(tmp_path / "elsewhere"))
    fill(tmp_path / "elsewhere" / "audit" / "audit.log", 2)
    assert cli_main(["audit", "verify"]) == 0
    assert "OK: 2 records" in capsys.readouterr().out


def test_cli_show(tmp_path, capsys):
    path = tmp_path / "audit.log"
    records = fill(path, 3)
    assert cli_main(["audit", "show", "d-00002", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == records[1]
    assert cli_main(["audit", "show", "d-09999", str(path)]) == 1


def test_record_format_module_uses_the_standard_library_only():
    """The CLI verifies exported logs anywhere; the client layer never imports services or gateway."""
    import ast
    import sys

    tree = ast.parse(Path(fmt.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
