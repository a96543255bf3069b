"""gRPC servicer for the watchlist service: validation, orchestration and proto conversion.

Storage is Milvus (``store.py``); searches run either in the in-process exact index kept in step
with Milvus (``memindex.py``, the default for Milvus Lite and for a server with a change feed) or in
Milvus itself (a server without one). With several replicas on one server, the change feed
(``changefeed.py``) carries each replica's acknowledged writes to the others before their next RPC.
Writes are serialised by one lock: they are admin operations, and serialising them makes
idempotency checks and the index update atomic with the Milvus write.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np
from pymilvus.exceptions import MilvusException

from facegate.thresholds import CALIBRATION_DIR, load_thresholds
from facegate.v1 import watchlist_pb2 as pb
from facegate.v1 import watchlist_pb2_grpc
from services.runtime.config import RuntimeSettings
from services.runtime.errors import (
    AlreadyExists,
    FacegateError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.runtime.redis_client import tls_options
from services.runtime.server import run_service
from services.watchlist import changefeed, metrics, validation
from services.watchlist.catalogue import TEMPLATE_META, Catalogue, MemoryCatalogue, MilvusCatalogue
from services.watchlist.changefeed import ChangeFeed, Replication
from services.watchlist.config import WatchlistSettings
from services.watchlist.memindex import Hit, MemoryIndex
from services.watchlist.store import ListRow, MilvusStore, SubjectRow, TemplateRow, now_ms, subject_key
from services.watchlist.tokens import decode_page_token, encode_page_token

log = logging.getLogger("facegate.watchlist")

MAX_TOP_K = 100
#: Templates turned into one float32 block at a time while the index is rebuilt.
REBUILD_BATCH = 10_000
F = TypeVar("F", bound=Callable[..., Any])


def milvus_errors(fn: F) -> F:
    """Turn Milvus/connection failures into UNAVAILABLE so callers fail closed and may retry."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FacegateError:
            raise
        except MilvusException as exc:
            log.warning("milvus call failed", extra={"milvus_code": getattr(exc, "code", None)})
            raise Unavailable(
                f"watchlist store unavailable (milvus error {getattr(exc, 'code', '?')})"
            ) from None
        except (ConnectionError, grpc.RpcError) as exc:
            log.warning("milvus connection failed", extra={"error_type": type(exc).__name__})
            raise Unavailable("watchlist store unavailable (connection failed)") from None

    return wrapper  # type: ignore[return-value]


def serialised(fn: F) -> F:
    """Run under the write lock: the in-memory catalogue's dicts must not change while a read
    iterates them (admin reads only; Search never takes this lock)."""

    @functools.wraps(fn)
    def wrapper(self: WatchlistService, *args: Any, **kwargs: Any) -> Any:
        with self._write:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def release_freed_memory() -> None:
    """Hand the pages freed after a rebuild back to the OS (glibc keeps them otherwise: measured
    1,606 -> 1,244 MiB RSS at 200k templates). A no-op where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def synced(fn: F) -> F:
    """First apply the other replicas' writes from the change feed (if there is one), so this RPC
    sees every write acknowledged before it began; UNAVAILABLE when the feed cannot be read."""

    @functools.wraps(fn)
    def wrapper(self: WatchlistService, *args: Any, **kwargs: Any) -> Any:
        if self.replication is not None:
            self.replication.sync()
        return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def feed_key(settings: WatchlistSettings) -> str:
    """One feed per Milvus collection set: the server, its database and the collection prefix."""
    where = hashlib.sha256(f"{settings.milvus_uri}|{settings.milvus_db}".encode()).hexdigest()[:12]
    return f"facegate:watchlist:{where}:{settings.milvus_db or 'default'}:{settings.collection_prefix}"


def _ts(ms: int, target: Any) -> None:
    if ms:
        target.FromMilliseconds(int(ms))


class WatchlistService(watchlist_pb2_grpc.WatchlistServiceServicer):
    service_names = ("facegate.v1.WatchlistService",)

    def __init__(self, settings: WatchlistSettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime
        self.mode = settings.effective_search_mode
        self.store = MilvusStore(settings)
        self.index = self._new_index() if self.mode == "memory" else None
        self._write = threading.RLock()
        self._lists: dict[str, ListRow] = {}
        self._memory = MemoryCatalogue() if self.mode == "memory" else None
        self.catalogue: Catalogue = self._memory or MilvusCatalogue(self.store)
        self._calibration_dir = settings.calibration_dir or CALIBRATION_DIR
        self.replication: Replication | None = None
        if settings.change_feed_url:
            feed = ChangeFeed(
                settings.change_feed_url,
                feed_key(settings),
                timeout_s=settings.change_feed_timeout_s,
                max_len=settings.change_feed_max_len,
                tls=tls_options(settings.change_feed_url, runtime, "FACEGATE_WATCHLIST_CHANGE_FEED_URL"),
            )
            # A replica searching in Milvus only publishes (a memory replica on the same server
            # needs its writes); a memory replica also follows.
            self.replication = Replication(
                feed,
                apply=self._apply_change,
                reload=self._reload_from_store,
                lock=self._write,
                follow=self.mode == "memory",
            )

    def _new_index(self) -> MemoryIndex:
        s = self.settings
        return MemoryIndex(
            s.dimension,
            sketch_bits=s.sketch_bits,
            sketch_min_templates=s.sketch_min_templates,
            miss_probability=s.sketch_miss_probability,
            max_candidates=s.sketch_max_candidates,
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def register(self, server: grpc.Server) -> None:
        watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        if self.replication is not None:
            self.replication.mark()  # before the load: later changes are applied on top of it
        self.store.open()
        with self._write:
            self._lists = {row.name: row for row in self.store.all_lists()}
            if self.index is not None and self._memory is not None:
                self._rebuild_index(self._lists, self.index, self._memory)
        log.info(
            "watchlist store open",
            extra={
                "backend": self.backend,
                "search_mode": self.mode,
                "change_feed": self.replication is not None,
                "lists": len(self._lists),
                "server_version": self.store.server_version,
            },
        )

    def close(self) -> None:
        if self.replication is not None:
            self.replication.close()
        self.store.close()

    @property
    def backend(self) -> str:
        return "milvus-lite" if self.settings.is_lite else "milvus-server"

    def _rebuild_index(self, lists: dict[str, ListRow], index: MemoryIndex, memory: MemoryCatalogue) -> None:
        """Load every subject and template of ``lists`` from Milvus (the system of record) into
        ``index`` and ``memory``.

        Streamed in batches: each batch's vectors become one float32 block at once and the catalogue
        keeps the templates' metadata only. Holding the rows as Milvus returns them (128 Python
        floats each, ~4 KB a template) took 2.3 GiB of RSS at 200k templates and 7.7 GiB at 1M.
        """
        start = time.perf_counter()
        subjects = [s for s in self.store.all_subjects() if s.watchlist in lists]
        held = {s.key for s in subjects}
        metas: list[TemplateRow] = []
        per_list: dict[str, tuple[list[str], list[str], list[np.ndarray]]] = defaultdict(lambda: ([], [], []))
        for batch in _batches(self.store.iter_templates([*TEMPLATE_META, "embedding"]), REBUILD_BATCH):
            batch = [r for r in batch if r["watchlist"] in lists]
            metas += [TemplateRow(**{k: r[k] for k in TEMPLATE_META}) for r in batch]
            # An enrolment that stopped half-way (templates, no subject row): the subject row decides.
            batch = [r for r in batch if subject_key(r["watchlist"], r["subject_id"]) in held]
            if not batch:
                continue
            vectors = np.asarray([r["embedding"] for r in batch], dtype=np.float32)
            rows_of: dict[str, list[int]] = defaultdict(list)
            for i, r in enumerate(batch):
                rows_of[r["watchlist"]].append(i)
            for name, rows in rows_of.items():
                sids, tids, blocks = per_list[name]
                sids += [batch[i]["subject_id"] for i in rows]
                tids += [batch[i]["template_id"] for i in rows]
                blocks.append(vectors[rows])
        memory.load(subjects, metas)
        for name, (sids, tids, blocks) in per_list.items():
            index.load(name, sids, tids, np.concatenate(blocks))
        del per_list
        release_freed_memory()
        elapsed = time.perf_counter() - start
        metrics.INDEX_REBUILD_SECONDS.set(elapsed)
        metrics.TEMPLATES.set(index.total())
        log.info("index rebuilt", extra={"templates": index.total(), "seconds": round(elapsed, 2)})

    # -- change feed -------------------------------------------------------------------------------

    def _reload_from_store(self) -> None:
        """Rebuild lists, catalogue and index from Milvus (under the write lock), after a Strong
        barrier so every write any replica acknowledged is read. Built aside and swapped in at the
        end: a search never sees a half-loaded index (which could miss a wanted person)."""
        self.store.barrier()
        lists = {row.name: row for row in self.store.all_lists()}
        index, memory = self._new_index(), MemoryCatalogue()
        self._rebuild_index(lists, index, memory)
        self._lists, self.index, self._memory, self.catalogue = lists, index, memory, memory

    def _apply_change(self, kind: str, payload: dict[str, Any]) -> None:
        """Apply another replica's acknowledged write to this replica's lists, catalogue and index.
        Idempotent: right after a reload, a change may already be in what was loaded."""
        handlers = {
            changefeed.LIST_CREATED: self._apply_list_created,
            changefeed.LIST_DROPPED: self._apply_list_dropped,
            changefeed.SUBJECT_ENROLLED: self._apply_enrolled,
            changefeed.TEMPLATES_ADDED: self._apply_added,
            changefeed.SUBJECT_REMOVED: self._apply_removed,
        }
        if kind not in handlers:
            raise ValueError(f"unknown change kind {kind!r}")
        handlers[kind](payload)
        assert self.index is not None
        metrics.TEMPLATES.set(self.index.total())

    def _apply_list_created(self, payload: dict[str, Any]) -> None:
        row = ListRow(**payload["list"])
        self._lists.setdefault(row.name, row)

    def _apply_list_dropped(self, payload: dict[str, Any]) -> None:
        assert self.index is not None and self._memory is not None
        name = payload["watchlist"]
        if self._lists.pop(name, None) is not None:
            self.index.drop_list(name)
            self._memory.dropped(name)

    def _apply_enrolled(self, payload: dict[str, Any]) -> None:
        assert self._memory is not None
        subject = SubjectRow(**payload["subject"])
        if subject.watchlist not in self._lists or self._memory.get_subject(
            subject.watchlist, subject.subject_id
        ):
            return  # the list is gone, or the subject is already held
        templates = changefeed.decode_templates(payload["templates"])
        self._memory.enrolled(subject, templates)
        self._index_add(templates)

    def _apply_added(self, payload: dict[str, Any]) -> None:
        assert self._memory is not None
        templates = changefeed.decode_templates(payload["templates"])
        if not templates or self._memory.get_subject(templates[0].watchlist, templates[0].subject_id) is None:
            return  # removed since
        held = {
            t.template_id for t in self._memory.templates_of(templates[0].watchlist, templates[0].subject_id)
        }
        fresh = [t for t in templates if t.template_id not in held]
        self._memory.added(fresh)
        self._index_add(fresh)

    def _apply_removed(self, payload: dict[str, Any]) -> None:
        assert self.index is not None and self._memory is not None
        watchlist, sid = payload["watchlist"], payload["subject_id"]
        if self._memory.get_subject(watchlist, sid) is not None:
            self._memory.removed(watchlist, sid)
            self.index.remove_subject(watchlist, sid)

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        if self.replication is not None:
            self.replication.publish(kind, payload)

    # -- helpers -----------------------------------------------------------------------------------

    def _list(self, name: str, field: str = "watchlist") -> ListRow:
        validation.watchlist_name(name, field)
        row = self._lists.get(name)
        if row is None and self.mode == "milvus":
            # Another replica may have created it: Milvus is the system of record.
            self._lists = {r.name: r for r in self.store.all_lists()}
            row = self._lists.get(name)
        if row is None:
            raise NotFound(f"watchlist {name!r} does not exist")
        return row

    def _watchlist_pb(self, row: ListRow, counts: bool = True) -> pb.Watchlist:
        msg = pb.Watchlist(
            name=row.name, description=row.description, kind=row.kind, model_version=row.model_version
        )
        _ts(row.created_at, msg.created_at)
        if counts:
            msg.subject_count, msg.template_count = self.catalogue.counts(row.name)
        return msg

    @staticmethod
    def _info_pb(s: SubjectRow) -> pb.SubjectInfo:
        info = pb.SubjectInfo(
            display_name=s.display_name,
            category=s.category,
            reason=s.reason,
            added_by=s.added_by,
            external_ref=s.external_ref,
        )
        _ts(s.expires_at, info.expires_at)
        return info

    def _subject_pb(self, s: SubjectRow, templates: list[TemplateRow]) -> pb.Subject:
        msg = pb.Subject(subject_id=s.subject_id, watchlist=s.watchlist, info=self._info_pb(s))
        _ts(s.created_at, msg.created_at)
        for t in templates:
            info = msg.templates.add(
                template_id=t.template_id,
                model_version=t.model_version,
                quality_score=t.quality,
                source=t.source,
            )
            _ts(t.created_at, info.created_at)
        return msg

    def _templates(self, lst: ListRow, sid: str, inputs: Any, existing: int) -> list[TemplateRow]:
        s = self.settings
        if not inputs:
            raise InvalidArgument("templates: at least one template is required")
        if len(inputs) > s.max_templates_per_request:
            raise ResourceExhausted(
                f"templates: {len(inputs)} in one request, the limit is {s.max_templates_per_request}"
            )
        if existing + len(inputs) > s.max_templates_per_subject:
            raise ResourceExhausted(
                f"templates: the subject would have {existing + len(inputs)} templates, "
                f"the limit is {s.max_templates_per_subject}"
            )
        created = now_ms()
        rows = []
        for i, t in enumerate(inputs):
            field = f"templates[{i}]"
            if not t.HasField("embedding"):
                raise InvalidArgument(f"{field}.embedding is required")
            version = t.embedding.model_version
            if not version:
                raise InvalidArgument(f"{field}.embedding.model_version is required")
            if version != lst.model_version:
                raise FailedPrecondition(
                    f"{field} comes from model version {version[:12]}…, watchlist {lst.name!r} holds "
                    f"model version {lst.model_version[:12]}… (templates of two models never compare)"
                )
            vector = validation.vector(t.embedding.values, s.dimension, f"{field}.embedding")
            if not math.isfinite(t.quality_score) or not 0.0 <= t.quality_score <= 1.0:
                raise InvalidArgument(f"{field}.quality_score must be within 0..1")
            validation.text("source", t.source)
            rows.append(
                TemplateRow(
                    template_id=uuid.uuid4().hex,
                    watchlist=lst.name,
                    subject_id=sid,
                    model_version=version,
                    quality=float(t.quality_score),
                    source=t.source,
                    created_at=created,
                    embedding=vector,
                )
            )
        return rows

    def _subject_row(self, lst: ListRow, sid: str, info: pb.SubjectInfo, key: str) -> SubjectRow:
        for field in ("display_name", "reason", "added_by", "external_ref"):
            validation.text(field, getattr(info, field))
        validation.category(info.category)
        expires = info.expires_at.ToMilliseconds() if info.HasField("expires_at") else 0
        if expires < 0:
            raise InvalidArgument("info.expires_at must be after 1970")
        return SubjectRow(
            watchlist=lst.name,
            subject_id=sid,
            display_name=info.display_name,
            category=info.category,
            reason=info.reason,
            expires_at=expires,
            added_by=info.added_by,
            external_ref=info.external_ref,
            idempotency_key=key,
            created_at=now_ms(),
        )

    def _index_add(self, templates: list[TemplateRow]) -> None:
        if self.index is None or not templates:
            return
        t0 = templates[0]
        self.index.add(
            t0.watchlist,
            t0.subject_id,
            [t.template_id for t in templates],
            np.stack([t.embedding for t in templates]),
        )
        metrics.TEMPLATES.set(self.index.total())

    # -- watchlists --------------------------------------------------------------------------------

    @milvus_errors
    @synced
    def CreateWatchlist(
        self, request: pb.CreateWatchlistRequest, context: grpc.ServicerContext
    ) -> pb.Watchlist:
        name = validation.watchlist_name(request.name, "name")
        if request.kind not in pb.WatchlistKind.values() or request.kind == pb.WATCHLIST_KIND_UNSPECIFIED:
            raise InvalidArgument("kind must be WANTED, ALERT or ALLOW")
        validation.text("description", request.description)
        version = validation.model_version(request.model_version or self.settings.model_version)
        with self._write:
            stored = set(self._lists) | {r.name for r in self.store.all_lists()}
            if name in stored:
                raise AlreadyExists(f"watchlist {name!r} already exists")
            if len(stored) >= self.settings.max_watchlists:
                raise ResourceExhausted(
                    f"{len(stored)} watchlists exist, the most this deployment holds "
                    "(FACEGATE_WATCHLIST_MAX_WATCHLISTS; each list is a Milvus partition and a collection "
                    "holds at most 4,096): delete one first"
                )
            row = ListRow(name, request.description, int(request.kind), version, now_ms())
            self.store.put_list(row)
            self._lists[name] = row
            self._publish(changefeed.LIST_CREATED, changefeed.list_payload(row))
        return self._watchlist_pb(row, counts=False)

    @milvus_errors
    @synced
    @serialised
    def ListWatchlists(self, request: pb.ListWatchlistsRequest, context: grpc.ServicerContext) -> Any:
        lists = self._lists.values() if self._memory is not None else self.store.all_lists()
        rows = sorted(lists, key=lambda r: r.name)
        return pb.ListWatchlistsResponse(watchlists=[self._watchlist_pb(r) for r in rows])

    @milvus_errors
    @synced
    def DeleteWatchlist(self, request: pb.DeleteWatchlistRequest, context: grpc.ServicerContext) -> Any:
        with self._write:
            lst = self._list(request.name, "name")
            if self.index is not None:
                self.index.drop_list(lst.name)  # hide first; Milvus delete follows in this RPC
            subjects, templates = self.catalogue.counts(lst.name)
            self.store.delete_list(lst.name)
            self._lists.pop(lst.name, None)
            self.catalogue.dropped(lst.name)
            if self.index is not None:
                metrics.TEMPLATES.set(self.index.total())
            self._publish(changefeed.LIST_DROPPED, {"watchlist": lst.name})
        return pb.DeleteWatchlistResponse(subjects_removed=subjects, templates_removed=templates)

    # -- subjects ----------------------------------------------------------------------------------

    @milvus_errors
    @synced
    def EnrollSubject(self, request: pb.EnrollSubjectRequest, context: grpc.ServicerContext) -> Any:
        key = validation.idempotency_key(request.idempotency_key)
        sid = validation.subject_id(request.subject_id) if request.subject_id else ""
        with self._write:
            lst = self._list(request.watchlist)
            if key:
                first = self.catalogue.find_by_key(lst.name, key)
                if first is not None:
                    if sid and sid != first.subject_id:
                        raise InvalidArgument("idempotency_key was already used to enrol another subject_id")
                    metrics.ENROLMENTS.labels("replayed").inc()
                    templates = self.catalogue.templates_of(lst.name, first.subject_id)
                    return pb.EnrollSubjectResponse(subject=self._subject_pb(first, templates), created=False)
            chosen = bool(sid)
            if not sid:
                # From the key when there is one, so a retry after a half-finished enrolment reuses the id.
                sid = (
                    "s" + hashlib.sha256(f"{lst.name}/{key}".encode()).hexdigest()[:31]
                    if key
                    else uuid.uuid4().hex
                )
            subject = self._subject_row(lst, sid, request.info, key)
            templates = self._templates(lst, sid, request.templates, existing=0)
            if chosen and self.catalogue.get_subject(lst.name, sid) is not None:
                raise AlreadyExists(f"subject {sid!r} already exists in watchlist {lst.name!r}")
            if (chosen or key) and self.catalogue.may_have_orphans(lst.name, sid):
                # Templates left by an enrolment that failed before its subject row was written.
                self.store.delete_templates_of(lst.name, sid)
            self.store.put_subject(subject, templates)
            self.catalogue.enrolled(subject, templates)
            self._index_add(templates)
            self._publish(changefeed.SUBJECT_ENROLLED, changefeed.enrolled_payload(subject, templates))
            metrics.ENROLMENTS.labels("created").inc()
        return pb.EnrollSubjectResponse(subject=self._subject_pb(subject, templates), created=True)

    @milvus_errors
    @synced
    def AddTemplates(self, request: pb.AddTemplatesRequest, context: grpc.ServicerContext) -> Any:
        sid = validation.subject_id(request.subject_id)
        with self._write:
            lst = self._list(request.watchlist)
            if self.catalogue.get_subject(lst.name, sid) is None:
                raise NotFound(f"subject {sid!r} does not exist in watchlist {lst.name!r}")
            existing = len(self.catalogue.templates_of(lst.name, sid))
            templates = self._templates(lst, sid, request.templates, existing=existing)
            self.store.put_templates(templates)
            self.catalogue.added(templates)
            self._index_add(templates)
            self._publish(changefeed.TEMPLATES_ADDED, {"templates": changefeed.encode_templates(templates)})
        return pb.AddTemplatesResponse(template_ids=[t.template_id for t in templates])

    @milvus_errors
    @synced
    def RemoveSubject(self, request: pb.RemoveSubjectRequest, context: grpc.ServicerContext) -> Any:
        sid = validation.subject_id(request.subject_id)
        with self._write:
            lst = self._list(request.watchlist)
            if self.catalogue.get_subject(lst.name, sid) is None:
                raise NotFound(f"subject {sid!r} does not exist in watchlist {lst.name!r}")
            templates = self.catalogue.templates_of(lst.name, sid)
            # Milvus first (templates, then the subject row, then a Strong barrier), then the index:
            # when this returns, neither path can serve the subject. The in-memory catalogue knows
            # every template id (unless an orphan was left), so Lite deletes by primary key.
            known = self._memory is not None and not self.catalogue.may_have_orphans(lst.name, sid)
            self.store.delete_subject(lst.name, sid, [t.template_id for t in templates] if known else None)
            self.catalogue.removed(lst.name, sid)
            if self.index is not None:
                self.index.remove_subject(lst.name, sid)
                metrics.TEMPLATES.set(self.index.total())
            metrics.REMOVALS.inc()
            self._publish(changefeed.SUBJECT_REMOVED, {"watchlist": lst.name, "subject_id": sid})
        return pb.RemoveSubjectResponse(templates_removed=len(templates))

    @milvus_errors
    @synced
    @serialised
    def GetSubject(self, request: pb.GetSubjectRequest, context: grpc.ServicerContext) -> pb.Subject:
        sid = validation.subject_id(request.subject_id)
        lst = self._list(request.watchlist)
        subject = self.catalogue.get_subject(lst.name, sid)
        if subject is None:
            raise NotFound(f"subject {sid!r} does not exist in watchlist {lst.name!r}")
        return self._subject_pb(subject, self.catalogue.templates_of(lst.name, sid))

    @milvus_errors
    @synced
    @serialised
    def ListSubjects(self, request: pb.ListSubjectsRequest, context: grpc.ServicerContext) -> Any:
        s = self.settings
        watchlist = self._list(request.watchlist).name if request.watchlist else ""
        category = validation.category(request.category)
        size = request.page_size or s.default_page_size
        if size > s.max_page_size:
            raise InvalidArgument(f"page_size {size} is over the limit of {s.max_page_size}")
        after = decode_page_token(request.page_token) if request.page_token else ""
        keys = self.catalogue.subject_keys(watchlist, category, after)
        page = keys[:size]
        subjects = self.catalogue.get_subjects(page)
        by_subject = self.catalogue.templates_for([k for k in page if k in subjects])
        out = pb.ListSubjectsResponse()
        for k in page:
            if k in subjects:
                out.subjects.append(self._subject_pb(subjects[k], by_subject.get(k, [])))
        if len(keys) > size:
            out.next_page_token = encode_page_token(page[-1])
        return out

    # -- search ------------------------------------------------------------------------------------

    def _threshold(self, request: pb.SearchRequest, version: str) -> tuple[float, float]:
        if request.HasField("threshold"):
            if request.HasField("target_far"):
                raise InvalidArgument("set threshold or target_far, not both")
            t = request.threshold
            if not math.isfinite(t) or not -1.0 <= t <= 1.0:
                raise InvalidArgument("threshold must be a cosine similarity within -1..1")
            return float(t), 0.0
        far = request.target_far if request.HasField("target_far") else None
        if far is not None and not (math.isfinite(far) and 0.0 < far < 1.0):
            raise InvalidArgument(f"target_far is {far:g}; it must be a rate between 0 and 1")
        try:
            point = load_thresholds(version, self._calibration_dir).at_far(far)
        except FailedPrecondition:
            raise FailedPrecondition(
                f"no calibrated threshold for model version {version[:12]}…: pass SearchRequest.threshold "
                "explicitly or run `facegate calibrate`"
            ) from None
        return float(point.threshold), float(point.far)

    @milvus_errors
    @synced
    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        s = self.settings
        if not request.probes:
            raise InvalidArgument("probes: at least one probe embedding is required")
        if len(request.probes) > s.max_probes:
            raise ResourceExhausted(
                f"probes: {len(request.probes)} in one request, the limit is {s.max_probes}"
            )
        top_k = request.top_k or s.default_top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidArgument(f"top_k {top_k} is out of range 1..{MAX_TOP_K}")
        versions = {p.model_version for p in request.probes}
        if "" in versions:
            raise InvalidArgument("probes: every probe needs its model_version")
        if len(versions) > 1:
            raise InvalidArgument("probes: all probes of one request must come from one model version")
        version = versions.pop()
        probes = np.stack(
            [validation.vector(p.values, s.dimension, f"probes[{i}]") for i, p in enumerate(request.probes)]
        )
        validation.no_duplicates("watchlists", request.watchlists)
        if request.watchlists:
            lists = [self._list(name, "watchlists") for name in request.watchlists]
        else:
            if self.mode == "milvus":
                self._lists = {r.name: r for r in self.store.all_lists()}
            lists = list(self._lists.values())
        for lst in lists:
            if lst.model_version != version:
                raise FailedPrecondition(
                    f"probe model version {version[:12]}… differs from watchlist {lst.name!r} "
                    f"({lst.model_version[:12]}…); templates of two models never compare"
                )
        threshold, far = self._threshold(request, version)
        response = pb.SearchResponse(threshold=threshold, target_far=far, model_version=version)
        names = [lst.name for lst in lists]
        start = time.perf_counter()
        if not names:
            hits: list[list[Hit]] = [[] for _ in probes]
            subjects: dict[str, SubjectRow] = {}
        elif self.index is not None:
            hits = self.index.search(probes, names, top_k, threshold, s.max_templates_per_subject)
            subjects = self._memory.subjects if self._memory is not None else {}
        else:
            hits, subjects = self._milvus_search(probes, names, top_k, threshold)
        metrics.SEARCH_SECONDS.labels(self.mode).observe(time.perf_counter() - start)
        metrics.SEARCH_PROBES.inc(len(probes))
        kinds = {lst.name: lst.kind for lst in lists}
        now = now_ms()
        for probe_hits in hits:
            result = response.results.add()
            for hit in probe_hits:
                subject = subjects.get(subject_key(hit.watchlist, hit.subject_id))
                if subject is None or (subject.expires_at and subject.expires_at <= now):
                    continue  # half-written or erased subject, or an expired listing
                result.candidates.add(
                    subject_id=hit.subject_id,
                    watchlist=hit.watchlist,
                    kind=kinds[hit.watchlist],
                    score=hit.score,
                    template_id=hit.template_id,
                    info=self._info_pb(subject),
                )
                metrics.SEARCH_HITS.inc()
        return response

    def _milvus_search(
        self, probes: np.ndarray, names: list[str], top_k: int, threshold: float
    ) -> tuple[list[list[Hit]], dict[str, SubjectRow]]:
        limit = min(16384, top_k * self.settings.max_templates_per_subject)
        raw = self.store.search(probes, names, limit)
        hits: list[list[Hit]] = []
        for rows in raw:
            seen: set[str] = set()
            out: list[Hit] = []
            for r in rows:  # best first
                score = float(r["distance"])
                if score < threshold:
                    break
                ent = r["entity"]
                key = subject_key(ent["watchlist"], ent["subject_id"])
                if key in seen:
                    continue
                seen.add(key)
                out.append(Hit(ent["watchlist"], ent["subject_id"], str(ent["template_id"]), score))
                if len(out) >= top_k:
                    break
            hits.append(out)
        keys = sorted({subject_key(h.watchlist, h.subject_id) for probe in hits for h in probe})
        return hits, self.catalogue.get_subjects(keys)

    # -- stats -------------------------------------------------------------------------------------

    @milvus_errors
    @synced
    @serialised
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        s = self.settings
        info = self.store.index_info()
        milvus_params = {"index_type": s.index_type, **s.index_params, "search": s.search_params}
        if self.index is not None:
            index_type = "IN_PROCESS_EXACT"
            params = {
                "serving": "in-process: exact float32 inner product; lists of sketch_min_templates or "
                "more prefiltered by a sign sketch, then scored exactly",
                "sketch": {
                    "min_templates": s.sketch_min_templates,
                    "bits": s.sketch_bits,
                    "miss_probability": s.sketch_miss_probability,
                    "max_candidates": s.sketch_max_candidates,
                },
                "milvus": milvus_params,
            }
        else:
            index_type = str(info.get("index_type", s.index_type))
            params = milvus_params
        out = pb.StatsResponse(
            backend=self.backend,
            index_type=index_type,
            index_params=json.dumps(params, sort_keys=True),
            index_state=str(info.get("state", "")),
        )
        lists = self._lists.values() if self._memory is not None else self.store.all_lists()
        for row in sorted(lists, key=lambda r: r.name):
            subjects, templates = self.catalogue.counts(row.name)
            out.watchlists.add(name=row.name, subject_count=subjects, template_count=templates)
        return out


def main() -> None:
    run_service("watchlist", WatchlistSettings, WatchlistService)
