"""The gateway's CLI commands (verify, identify, compare, detect, watchlist ...) on the real stack."""

from __future__ import annotations

import json
import uuid

import pytest

from facegate import cli
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame

pytestmark = pytest.mark.slow

PORTRAIT = TRAVELLER / "Amram_Mitzna_0002.jpg"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "live.jpg"
    path.write_bytes(gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg"))
    return path


def run(stack, role: str | None, *argv: str, capsys) -> tuple[int, str, str]:
    key = stack.keys[role] if role else "fg_kiosk-00000000_not-a-key"
    code = cli.main([*argv, "--target", stack.target, "--key", key])
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_prints_the_decision_as_json_and_text(stack, live, capsys) -> None:
    code, out, _ = run(
        stack, "kiosk", "verify", "--live", str(live), "--portrait", str(PORTRAIT), "--json", capsys=capsys
    )
    assert code == 0 and json.loads(out)["outcome"] == "ACCEPT"
    code, out, _ = run(
        stack, "kiosk", "verify", "--live", str(live), "--portrait", str(OTHER_PERSON), capsys=capsys
    )
    assert code == 0 and out.startswith("REFER") and "Please see an officer" in out


def test_verify_with_a_wrong_key_or_role_exits_1_with_the_code(stack, live, capsys) -> None:
    argv = ("verify", "--live", str(live), "--portrait", str(PORTRAIT))
    code, _, err = run(stack, None, *argv, capsys=capsys)
    assert code == 1 and err.startswith("error: UNAUTHENTICATED")
    code, _, err = run(stack, "officer", *argv, capsys=capsys)
    assert code == 1 and err.startswith("error: PERMISSION_DENIED")


def test_officer_commands(stack, live, capsys) -> None:
    code, out, _ = run(stack, "officer", "compare", str(live), str(PORTRAIT), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["reasons"][0][0] == "MATCH"
    code, out, _ = run(stack, "officer", "detect", str(live), capsys=capsys)
    assert code == 0 and out.startswith("1 face(s)")
    code, out, _ = run(stack, "officer", "identify", str(live), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["decision"]["outcome"] in ("ACCEPT", "REFER")


def test_watchlist_admin_round_trip(stack, live, capsys) -> None:
    name = "cli_" + uuid.uuid4().hex[:8]
    assert run(stack, "admin", "watchlist", "create", name, "--kind", "alert", capsys=capsys)[0] == 0
    code, out, _ = run(stack, "admin", "watchlist", "list", capsys=capsys)
    assert code == 0 and name in out
    code, out, _ = run(
        stack,
        "admin",
        "watchlist",
        "enroll",
        str(live),
        "--watchlist",
        name,
        "--subject-id",
        "s-1",
        capsys=capsys,
    )
    assert code == 0 and out.startswith("enrolled: s-1")
    code, out, _ = run(
        stack, "admin", "watchlist", "get", "s-1", "--watchlist", name, "--json", capsys=capsys
    )
    assert code == 0 and json.loads(out)["subject_id"] == "s-1"
    code, out, _ = run(stack, "admin", "watchlist", "remove", "s-1", "--watchlist", name, capsys=capsys)
    assert code == 0 and "1 template(s) erased" in out
    code, _, err = run(stack, "admin", "watchlist", "get", "s-1", "--watchlist", name, capsys=capsys)
    assert code == 1 and err.startswith("error: NOT_FOUND")
    assert run(stack, "admin", "watchlist", "delete", name, capsys=capsys)[0] == 0
