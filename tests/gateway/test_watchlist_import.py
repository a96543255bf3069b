"""`facegate watchlist import` through the real gateway (admin key): the subjects it enrols are
found by an officer's Identify, a refused photo is reported while the rest of the folder is
imported, a re-run skips what is already there, and the gateway's audit log holds one enrolment per
imported subject with the admin's key id. The shared stack: real MTCNN, FaceNet, Milvus Lite."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from facegate import audit as fmt
from facegate import cli
from facegate.commands.watchlist import subject_id_for
from facegate.gateway_client import Gateway
from gateway.keys import key_id_of
from tests.gateway.conftest import gate_frame
from tests.support import FACES

pytestmark = pytest.mark.slow

#: People with three dev photos: the first two (as gate-camera-like frames, which pass the
#: enrolment quality gate) are imported, the third is the officer's probe.
PEOPLE = ("Ai_Sugiyama", "Anne_Krueger", "Alejandro_Avila")


def photos_of(person: str) -> list[Path]:
    return sorted((FACES / "images" / person).glob("*.jpg"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """<subject>/<photo>: the first person with two photos and a corrupt file, the others with one
    photo each, a subject whose only photo has no face and one whose only photo is a group."""
    root = tmp_path_factory.mktemp("import")
    for i, person in enumerate(PEOPLE):
        (root / person).mkdir()
        for photo in photos_of(person)[: 2 if i == 0 else 1]:
            (root / person / photo.name).write_bytes(gate_frame(photo))
    (root / PEOPLE[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (root / "no_face_subject").mkdir()
    shutil.copy(FACES / "no_face" / "skimage_coffee.png", root / "no_face_subject" / "coffee.png")
    (root / "group_subject").mkdir()
    shutil.copy(sorted((FACES / "multi_face").glob("*.jpg"))[0], root / "group_subject" / "group.jpg")
    return root


def run_import(stack, folder: Path, name: str, role: str, capsys, *extra: str) -> tuple[int, str, str]:
    argv = ["watchlist", "import", str(folder), "--watchlist", name, "--no-progress", *extra]
    code = cli.main([*argv, "--target", stack.target, "--key", stack.keys[role]])
    out, err = capsys.readouterr()
    return code, out, err


def enrolments(stack, name: str) -> list[dict]:
    return [
        r
        for r in fmt.read_records(stack.audit_log)
        if r.get("operation") == "EnrollFromPhotos"
        and r.get("outcome") == "OK"
        and r.get("watchlists") == [name]
    ]


def test_import_goes_through_the_gateway_audited_and_resumable(stack, folder, capsys) -> None:
    name = "import_" + uuid.uuid4().hex[:8]
    code, _, err = run_import(stack, folder, name, "officer", capsys, "--create", "wanted")
    assert code == 1 and "PERMISSION_DENIED" in err, "an officer key must not enrol"
    code, _, err = run_import(stack, folder, name, "admin", capsys)
    assert code == 1 and "does not exist" in err  # no --create: the list is not made up

    code, out, err = run_import(
        stack, folder, name, "admin", capsys, "--create", "wanted", "--category", "wanted"
    )
    assert code == 0, err
    assert "subjects enrolled:  3" in out and "templates added:    4" in out, out
    assert "photos rejected:    3" in out, out
    assert "no face: 1" in out and "several faces: 1" in out and "unreadable image: 1" in out, out
    for person in PEOPLE:  # no names in what the import prints
        assert person not in out + err

    ids = {person: subject_id_for(person) for person in PEOPLE}
    with Gateway(stack.target, key=stack.keys["admin"], timeout=60) as admin:
        listed = admin.list_subjects(name).subjects
        assert sorted(s.subject_id for s in listed) == sorted(ids.values())
        assert {s.info.category for s in listed} == {"wanted"}
        assert sorted(len(s.templates) for s in listed) == [1, 1, 2]
    with Gateway(stack.target, key=stack.keys["officer"], timeout=60) as officer:
        for person, sid in ids.items():
            _, candidates = officer.identify(gate_frame(photos_of(person)[2]), watchlists=[name], top_k=1)
            assert [c.subject_id for c in candidates] == [sid], person

    records = enrolments(stack, name)
    assert sorted(r["subject_id"] for r in records) == sorted(ids.values())
    assert {r["caller"] for r in records} == {key_id_of(stack.keys["admin"])}
    assert {r["role"] for r in records} == {"admin"}

    code, out, err = run_import(stack, folder, name, "admin", capsys)
    assert code == 0, err
    assert "subjects enrolled:  0" in out and "templates added:    0" in out, out
    assert "photos skipped:     4" in out, out
    assert "no face: 1" in out and "several faces: 1" in out and "unreadable image: 1" in out, out
    assert len(enrolments(stack, name)) == 3, "a re-run enrolled again"

    # A new photo of an enrolled subject is reported, not added (the gateway enrols whole subjects).
    extra = photos_of(PEOPLE[1])[1]
    (folder / PEOPLE[1] / extra.name).write_bytes(gate_frame(extra))
    code, out, err = run_import(stack, folder, name, "admin", capsys)
    assert code == 0 and "new photo of an enrolled subject (not added): 1" in out, out
    assert "photos skipped:     4" in out, out
    with Gateway(stack.target, key=stack.keys["admin"], timeout=60) as admin:
        admin.delete_watchlist(name)
