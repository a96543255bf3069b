"""`facegate watchlist import`: bulk enrolment from a folder of <subject>/<photo> or a CSV manifest.

Each photo goes through the one face pipeline (``facegate.pipeline``: exactly one face, acceptable
quality, cut in the embedding model's geometry and embedded with its version pinned, as at the
gate), and its template is enrolled in the watchlist service. Re-running is
safe and cheap: subject ids and idempotency keys derive from the subject name and the photo bytes,
and each template records the photo's content hash in its ``source``, so photos already imported
are skipped before detection runs.
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

import grpc
from tqdm import tqdm

from facegate.client import open_channel
from facegate.commands._watchlist_admin import register_admin
from facegate.endpoints import default_target
from facegate.errors import FacegateError, FaceRejected, InvalidArgument, ResourceExhausted
from facegate.pipeline import FacePipeline, FacePolicy
from facegate.v1 import common_pb2, watchlist_pb2_grpc
from facegate.v1 import watchlist_pb2 as pb

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".jp2", ".j2k"}
KINDS = {
    "wanted": pb.WATCHLIST_KIND_WANTED,
    "alert": pb.WATCHLIST_KIND_ALERT,
    "allow": pb.WATCHLIST_KIND_ALLOW,
}
MAX_PER_REQUEST = 16
RPC_TIMEOUT_S = 60.0
REJECTIONS = {
    FaceRejected.NO_FACE: "no face",
    FaceRejected.SEVERAL_FACES: "several faces",
    FaceRejected.LOW_QUALITY: "low quality",
}


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


def source_for(digest: str) -> str:
    return f"import:sha256:{digest[:32]}"


def idempotency_key_for(name: str, digest: str) -> str:
    return "imp:" + hashlib.sha256(f"{name}\x00{digest}".encode()).hexdigest()[:48]


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


class Importer:
    """Runs photos through detection + embedding and enrols them, skipping what is already there."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pipeline = FacePipeline.connect(args.detection, args.embedding, budget_s=RPC_TIMEOUT_S)
        self.policy = FacePolicy(
            require_quality=not args.accept_low_quality, other_face_ratio=args.other_face_ratio
        )
        self._channel = open_channel(args.watchlist_target, budget_s=RPC_TIMEOUT_S)
        self.wl = watchlist_pb2_grpc.WatchlistServiceStub(self._channel)
        self.summary = Summary()

    def close(self) -> None:
        self.pipeline.close()
        self._channel.close()

    def ensure_list(self) -> None:
        names = {
            w.name
            for w in self.wl.ListWatchlists(pb.ListWatchlistsRequest(), timeout=RPC_TIMEOUT_S).watchlists
        }
        if self.args.watchlist in names:
            return
        if not self.args.create:
            raise SystemExit(
                f"watchlist {self.args.watchlist!r} does not exist (pass --create KIND to create it)"
            )
        self.wl.CreateWatchlist(
            pb.CreateWatchlistRequest(name=self.args.watchlist, kind=KINDS[self.args.create]),
            timeout=RPC_TIMEOUT_S,
        )

    def existing_sources(self, sid: str) -> set[str] | None:
        try:
            subject = self.wl.GetSubject(
                pb.GetSubjectRequest(watchlist=self.args.watchlist, subject_id=sid), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return {t.source for t in subject.templates}

    def template_for(self, data: bytes) -> tuple[pb.TemplateInput | None, str]:
        """The template of the photo's one face, or None and the rejection reason.

        A photo with a second face at least ``--other-face-ratio`` the subject's size is refused:
        which face is the subject would be a guess, and a guess is never enrolled.
        """
        try:
            template = self.pipeline.template(common_pb2.Image(data=data), self.policy, "photo")
        except FaceRejected as exc:
            return None, REJECTIONS[exc.reason]
        except (InvalidArgument, ResourceExhausted):
            return None, "unreadable image"
        return pb.TemplateInput(embedding=template.to_proto(), quality_score=template.quality_score), ""

    def import_subject(self, entry: SubjectEntry, bar: tqdm) -> None:
        sid = subject_id_for(entry.name)
        have = self.existing_sources(sid)
        new: list[tuple[str, pb.TemplateInput]] = []
        for photo in entry.photos:
            try:
                data = photo.read_bytes()
            except OSError:
                self.summary.rejected["unreadable file"] += 1
                bar.update(1)
                continue
            digest = photo_hash(data)
            source = source_for(digest)
            if (have is not None and source in have) or any(s == source for s, _ in new):
                self.summary.photos_skipped += 1
                bar.update(1)
                continue
            template, reason = self.template_for(data)
            bar.update(1)
            if template is None:
                self.summary.rejected[reason] += 1
                continue
            template.source = source
            new.append((digest, template))
        if not new:
            return
        templates = [t for _, t in new]
        if have is None:
            first, templates = templates[:MAX_PER_REQUEST], templates[MAX_PER_REQUEST:]
            reply = self.wl.EnrollSubject(
                pb.EnrollSubjectRequest(
                    watchlist=self.args.watchlist,
                    subject_id=sid,
                    idempotency_key=idempotency_key_for(entry.name, new[0][0]),
                    info=pb.SubjectInfo(
                        display_name=entry.display_name,
                        category=entry.category or self.args.category,
                        reason=entry.reason or self.args.reason,
                        added_by=self.args.added_by,
                        external_ref=entry.external_ref,
                    ),
                    templates=first,
                ),
                timeout=RPC_TIMEOUT_S,
            )
            if reply.created:
                self.summary.subjects_enrolled += 1
            self.summary.templates_added += len(first)
        for lo in range(0, len(templates), MAX_PER_REQUEST):
            chunk = templates[lo : lo + MAX_PER_REQUEST]
            self.wl.AddTemplates(
                pb.AddTemplatesRequest(watchlist=self.args.watchlist, subject_id=sid, templates=chunk),
                timeout=RPC_TIMEOUT_S,
            )
            self.summary.templates_added += len(chunk)

    def run(self, entries: list[SubjectEntry]) -> Summary:
        self.ensure_list()
        total = sum(len(e.photos) for e in entries)
        with tqdm(total=total, unit="photo", disable=self.args.no_progress, file=sys.stderr) as bar:
            for entry in entries:
                self.import_subject(entry, bar)
        return self.summary


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("watchlist", help="watchlist administration")
    actions = group.add_subparsers(dest="watchlist_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "import",
        help="enrol subjects from a folder of <subject>/<photo> or a CSV manifest (resumable)",
        description=__doc__,
    )
    p.add_argument("source", type=Path, help="folder of <subject>/<photo> files, or a CSV manifest")
    p.add_argument("--watchlist", required=True, help="target watchlist name")
    p.add_argument("--create", choices=sorted(KINDS), help="create the watchlist with this kind if missing")
    p.add_argument("--category", default="", help="category for subjects the manifest gives none")
    p.add_argument("--reason", default="", help="listing reason for subjects the manifest gives none")
    p.add_argument("--added-by", default="facegate-import", help="recorded as the subjects' added_by")
    p.add_argument("--accept-low-quality", action="store_true", help="enrol faces that fail the quality gate")
    p.add_argument(
        "--other-face-ratio",
        type=float,
        default=0.5,
        help="reject a photo as 'several faces' when another face's box area is at least this fraction "
        "of the subject's (smaller background faces are ignored; 0 = any second face)",
    )
    p.add_argument("--detection", default=default_target("detection"), metavar="HOST:PORT")
    p.add_argument("--embedding", default=default_target("embedding"), metavar="HOST:PORT")
    p.add_argument("--watchlist-target", default=default_target("watchlist"), metavar="HOST:PORT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    importer = Importer(args)
    try:
        summary = importer.run(entries)
    except grpc.RpcError as exc:
        print(f"import stopped: {exc.code().name}: {exc.details()} (re-run to resume)", file=sys.stderr)
        return 1
    except FacegateError as exc:
        print(f"import stopped: {exc.code.name}: {exc.message} (re-run to resume)", file=sys.stderr)
        return 1
    finally:
        importer.close()
    print("\n".join(summary.lines()))
    return 0
