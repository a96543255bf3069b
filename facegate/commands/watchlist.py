"""`facegate watchlist import`: bulk enrolment from a folder of <subject>/<photo> or a CSV manifest.

Through the gateway with an admin key, like every other ``facegate watchlist`` command: each subject
is one ``EnrollFromPhotos`` call, so it is role-checked, runs the gateway's enrolment policy (exactly
one acceptable face per photo, the same pipeline as at the gate) and is written to the gateway's
audit log with the key's id. A photo the gateway refuses (no face, several faces, low quality, an
unreadable image) is reported and left out; the subject is enrolled from its other photos.

Re-running is safe and cheap: the subject id derives from the subject name (``imp-`` + SHA-256, no
names in ids), the gateway records each photo's content hash in its template's ``source``, so photos
already imported are skipped before any detection runs, and the idempotency key derives from the
subject and the hashes of the photos sent, so a retried enrolment returns the first result. The
gateway cannot add photos to an enrolled subject: a new photo of one is reported, not added (remove
the subject and re-import it to change its photos).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from facegate.commands._gateway import add_gateway_arguments, gateway, print_json
from facegate.commands._watchlist_admin import register_admin
from facegate.errors import FacegateError, InvalidArgument, NotFound
from facegate.gateway_client import KINDS, Gateway
from facegate.v1 import common_pb2
from facegate.v1 import watchlist_pb2 as pb

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".jp2", ".j2k"}
#: Most photos one EnrollFromPhotos / CheckEnrolmentPhotos call takes (gateway.admin.MAX_PHOTOS).
MAX_PER_REQUEST = 16
#: Summary reasons of photos left out that the gateway did not refuse (see refusal_reason for those).
NOT_ADDED = "new photo of an enrolled subject (not added)"
TOO_MANY = f"over {MAX_PER_REQUEST} photos for one subject"


@dataclass
class SubjectEntry:
    """One subject to import: its name (as given in the folder or manifest) and its photos."""

    name: str
    photos: list[Path] = field(default_factory=list)
    display_name: str = ""
    category: str = ""
    reason: str = ""
    external_ref: str = ""


@dataclass
class Summary:
    subjects_enrolled: int = 0
    templates_added: int = 0
    photos_skipped: int = 0
    rejected: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [
            f"subjects enrolled:  {self.subjects_enrolled}",
            f"templates added:    {self.templates_added}",
            f"photos skipped:     {self.photos_skipped} (already imported)",
            f"photos rejected:    {sum(self.rejected.values())}",
        ]
        out += [f"  {reason}: {count}" for reason, count in sorted(self.rejected.items())]
        return out


def subject_id_for(name: str) -> str:
    """A stable subject id that does not reveal the name (ids appear in admin tools and logs)."""
    return "imp-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


def photo_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def imported_hashes(subject: pb.Subject) -> set[str]:
    """The photo hashes (32 hex digits) the subject's templates were made from: the gateway's
    ``gateway:sha256:…`` sources, and the ``import:sha256:…`` of templates imported before the
    import went through the gateway."""
    return {t.source.rpartition("sha256:")[2] for t in subject.templates if "sha256:" in t.source}


def idempotency_key_for(name: str, digests: list[str]) -> str:
    """The same subject sent with the same photos gets the same key (a retry returns the first result)."""
    material = "\x00".join([name, *sorted(digests)])
    return "imp:" + hashlib.sha256(material.encode()).hexdigest()[:48]


#: The summary's reason for each PhotoCheck.reason of a refused photo (see refusal_reason).
REFUSALS = {
    common_pb2.REASON_CODE_NO_FACE: "no face",
    common_pb2.REASON_CODE_MULTIPLE_FACES: "several faces",
    common_pb2.REASON_CODE_QUALITY_TOO_LOW: "low quality",
}


def refusal_reason(reason: common_pb2.ReasonCode) -> str:
    """The summary's reason for a photo the gateway refused, from its PhotoCheck.reason (typed, so
    rewording PhotoCheck.problem cannot change the count); anything else is the image itself
    (INVALID_INPUT: undecodable, empty, too large)."""
    return REFUSALS.get(reason, "unreadable image")


def entries_from_folder(folder: Path) -> list[SubjectEntry]:
    entries = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        if photos:
            entries.append(SubjectEntry(sub.name, photos, display_name=sub.name.replace("_", " ")))
    return entries


def entries_from_manifest(path: Path) -> list[SubjectEntry]:
    """CSV with a header: subject, photo (relative to the CSV), optional display_name, category,
    reason, external_ref. Several rows per subject add several photos."""
    by_name: dict[str, SubjectEntry] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"subject", "photo"} - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{path}: manifest lacks the column(s) {', '.join(sorted(missing))}")
        for row in reader:
            name = (row.get("subject") or "").strip()
            if not name:
                continue
            entry = by_name.setdefault(name, SubjectEntry(name, display_name=name))
            entry.photos.append((path.parent / row["photo"].strip()).resolve())
            for attr in ("display_name", "category", "reason", "external_ref"):
                if row.get(attr):
                    setattr(entry, attr, row[attr].strip())
    return list(by_name.values())


@dataclass
class Photo:
    """One readable photo of a subject: its bytes and content hash (never its path in a message)."""

    data: bytes
    digest: str


class Importer:
    """Enrols each subject through the gateway, skipping photos already imported."""

    def __init__(self, args: argparse.Namespace, gw: Gateway) -> None:
        self.args = args
        self.gw = gw
        self.summary = Summary()

    def count(self, reason: str, photos: int) -> None:
        if photos > 0:
            self.summary.rejected[reason] += photos

    def ensure_list(self) -> bool:
        """Whether the list exists, created first when missing and ``--create`` asks for it."""
        if any(w.name == self.args.watchlist for w in self.gw.list_watchlists()):
            return True
        if not self.args.create:
            return False
        self.gw.create_watchlist(self.args.watchlist, self.args.create)
        return True

    def existing(self, sid: str) -> pb.Subject | None:
        try:
            return self.gw.get_subject(self.args.watchlist, sid)
        except NotFound:
            return None

    def read(self, entry: SubjectEntry, bar: tqdm) -> list[Photo]:
        """The subject's readable photos, each once (a copy under another name counts as skipped)."""
        photos: list[Photo] = []
        for path in entry.photos:
            try:
                data = path.read_bytes()
            except OSError:
                self.summary.rejected["unreadable file"] += 1
                bar.update(1)
                continue
            digest = photo_hash(data)
            if any(p.digest == digest for p in photos):
                self.summary.photos_skipped += 1
                bar.update(1)
                continue
            photos.append(Photo(data, digest))
        return photos

    def acceptable(self, photos: list[Photo]) -> list[Photo]:
        """The photos the gateway's enrolment policy takes; each refused one is counted by reason."""
        keep: list[Photo] = []
        for lo in range(0, len(photos), MAX_PER_REQUEST):
            chunk = photos[lo : lo + MAX_PER_REQUEST]
            for photo, check in zip(
                chunk, self.gw.check_enrolment_photos([p.data for p in chunk]), strict=True
            ):
                if check.acceptable:
                    keep.append(photo)
                else:
                    self.summary.rejected[refusal_reason(check.reason)] += 1
        return keep

    def enrol(self, entry: SubjectEntry, sid: str, photos: list[Photo]) -> pb.EnrollSubjectResponse:
        return self.gw.enroll(
            self.args.watchlist,
            [p.data for p in photos],
            subject_id=sid,
            idempotency_key=idempotency_key_for(entry.name, [p.digest for p in photos]),
            info=pb.SubjectInfo(
                display_name=entry.display_name,
                category=entry.category or self.args.category,
                reason=entry.reason or self.args.reason,
                added_by=self.args.added_by,
                external_ref=entry.external_ref,
            ),
        )

    def import_subject(self, entry: SubjectEntry, bar: tqdm) -> None:
        sid = subject_id_for(entry.name)
        photos = self.read(entry, bar)
        if not photos:
            return
        subject = self.existing(sid)
        if subject is not None:
            have = imported_hashes(subject)
            new = [p for p in photos if p.digest[:32] not in have]
            self.summary.photos_skipped += len(photos) - len(new)
            # The gateway cannot add to an enrolled subject: say why each new photo is left out.
            self.count(NOT_ADDED, len(self.acceptable(new)) if new else 0)
            bar.update(len(photos))
            return
        reply = None
        if len(photos) <= MAX_PER_REQUEST:
            try:  # the common case: every photo is acceptable, one call
                reply = self.enrol(entry, sid, photos)
            except InvalidArgument:  # some photo refused (nothing enrolled): find which below
                reply = None
        if reply is None:
            good = self.acceptable(photos)
            self.count(TOO_MANY, len(good) - MAX_PER_REQUEST)
            good = good[:MAX_PER_REQUEST]
            reply = self.enrol(entry, sid, good) if good else None
        bar.update(len(photos))
        if reply is None:
            return
        if reply.created:
            self.summary.subjects_enrolled += 1
            self.summary.templates_added += len(reply.subject.templates)

    def run(self, entries: list[SubjectEntry]) -> Summary:
        total = sum(len(e.photos) for e in entries)
        with tqdm(total=total, unit="photo", disable=self.args.no_progress, file=sys.stderr) as bar:
            for entry in entries:
                self.import_subject(entry, bar)
        return self.summary


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("watchlist", help="watchlist administration (through the gateway, admin key)")
    actions = group.add_subparsers(dest="watchlist_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "import",
        help="enrol subjects from a folder of <subject>/<photo> or a CSV manifest (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", type=Path, help="folder of <subject>/<photo> files, or a CSV manifest")
    p.add_argument("--watchlist", required=True, help="target watchlist name")
    p.add_argument("--create", choices=sorted(KINDS), help="create the watchlist with this kind if missing")
    p.add_argument("--category", default="", help="category for subjects the manifest gives none")
    p.add_argument("--reason", default="", help="listing reason for subjects the manifest gives none")
    p.add_argument("--added-by", default="facegate-import", help="recorded as the subjects' added_by")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_gateway_arguments(p)
    p.set_defaults(func=run_import)
    register_admin(actions)


def _entries(source: Path) -> Iterator[SubjectEntry]:
    if source.is_dir():
        yield from entries_from_folder(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        yield from entries_from_manifest(source)
    else:
        raise SystemExit(f"{source}: expected a folder or a .csv manifest")


def run_import(args: argparse.Namespace) -> int:
    entries = list(_entries(args.source))
    try:
        with gateway(args) as gw:
            importer = Importer(args, gw)
            if not importer.ensure_list():
                print(
                    f"error: watchlist {args.watchlist!r} does not exist (pass --create KIND to create it)",
                    file=sys.stderr,
                )
                return 1
            summary = importer.run(entries)
    except FacegateError as exc:
        print(f"import stopped: {exc.code.name}: {exc.message} (re-run to resume)", file=sys.stderr)
        return 1
    if args.json:
        print_json(
            {
                "subjects_enrolled": summary.subjects_enrolled,
                "templates_added": summary.templates_added,
                "photos_skipped": summary.photos_skipped,
                "rejected": dict(summary.rejected),
            }
        )
    else:
        print("\n".join(summary.lines()))
    return 0
