"""Milvus storage of watchlists, subjects and templates: the system of record.

Three collections (names prefixed by ``collection_prefix``):
- ``<p>_lists``: one row per watchlist (name, kind, description, model version, created).
- ``<p>_subjects``: one row per subject, keyed ``<watchlist>/<subject_id>``, with the officer-facing
  metadata and the enrolment idempotency key, so erasure of the subject erases all of it.
- ``<p>_templates``: one row per template (vector, model version, quality, source, created).
Milvus needs a vector in every collection; the two metadata collections carry a 2-d zero vector.

Consistency (measured on Milvus 2.3.5 standalone with pymilvus 3.0.2): "Session" reads see this
client's inserts and upserts, but not its deletes - the delete's timestamp is not waited for. After
every delete the store therefore runs a "Strong" read (a barrier, ~0.2-0.4 s) on each collection
the delete touched before returning, after which the query nodes have applied the delete and every
later read, Session included, misses the deleted rows. The barrier must read the collection that
was written: a Strong read waits only for that collection's own channels, so one on another
collection (as before) let a search see a deleted template now and then (1 of 20 under load).
A new process (a restart after a crash) knows no write timestamps, so its Session reads are
eventual: ``open`` runs the barrier on every collection, so it sees all that was acknowledged.
Kiosk searches stay on Session (~2 ms) and never pay for Strong.
Milvus Lite applies every write synchronously, so the barrier is free there.

Partitions: each watchlist's templates live in a partition of their own (``wl_<name>``), so a
search names the partitions of its lists instead of filtering on ``watchlist``. The filter is a
pass over every row of the collection: at 1M templates on a Milvus 2.3.5 server it was 7 of a
search's 15 ms at p50 (bench/results/watchlist.md). Lists created before partitions (rows in
``_default``) are searched through the filter, which is correct for any mix of lists; a list's
partition is looked up afresh before every insert, so that no template of a partitioned list can
land where its searches do not look.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from services.runtime.errors import Unavailable
from services.watchlist.config import WatchlistSettings

log = logging.getLogger("facegate.watchlist.store")

DUMMY = [0.0, 0.0]
ITER_BATCH = 1000
PARTITION_PREFIX = "wl_"


def partition_of(watchlist: str) -> str:
    """The templates partition of a watchlist (names are ``[a-z0-9_]{1,64}``, so this is valid)."""
    return PARTITION_PREFIX + watchlist


@dataclass
class ListRow:
    name: str
    description: str
    kind: int
    model_version: str
    created_at: int


@dataclass
class SubjectRow:
    watchlist: str
    subject_id: str
    display_name: str = ""
    category: str = ""
    reason: str = ""
    expires_at: int = 0
    added_by: str = ""
    external_ref: str = ""
    idempotency_key: str = ""
    created_at: int = 0

    @property
    def key(self) -> str:
        return subject_key(self.watchlist, self.subject_id)


@dataclass
class TemplateRow:
    template_id: str
    watchlist: str
    subject_id: str
    model_version: str
    quality: float
    source: str
    created_at: int
    embedding: np.ndarray | None = field(default=None, repr=False)


def subject_key(watchlist: str, subject_id: str) -> str:
    return f"{watchlist}/{subject_id}"


def now_ms() -> int:
    return int(time.time() * 1000)


def _literal(value: str) -> str:
    """A Milvus string literal for any value (backslashes and quotes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quoted(values: list[str]) -> str:
    """A Milvus string-list literal; callers pass validated names/ids only (no quotes inside)."""
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


class MilvusStore:
    """Every Milvus call the service makes, with errors turned into UNAVAILABLE (fail closed)."""

    def __init__(self, settings: WatchlistSettings) -> None:
        self.settings = settings
        p = settings.collection_prefix
        self.lists = f"{p}_lists"
        self.subjects = f"{p}_subjects"
        self.templates = f"{p}_templates"
        self.client: MilvusClient | None = None
        self.server_version = ""
        self._consistency = settings.search_consistency
        #: list name -> whether its templates have a partition; searches only (a stale True makes a
        #: search fail, closed; a stale False makes it take the filter, which is always correct)
        self._partitioned: dict[str, bool] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        s = self.settings
        if s.is_lite:
            Path(s.milvus_uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"uri": s.milvus_uri, "timeout": s.milvus_timeout_s}
        token = s.milvus_token.get_secret_value()
        if token:
            kwargs["token"] = token
        if s.milvus_db:
            kwargs["db_name"] = s.milvus_db
        try:
            self.client = MilvusClient(**kwargs)
            self.server_version = str(self.client.get_server_version())
            self._ensure_collections()
            for name in (self.lists, self.subjects, self.templates):
                self.client.load_collection(name)
            self.barrier()
        except MilvusException as exc:
            raise Unavailable(f"milvus unavailable: {exc.message}") from None

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def _c(self) -> MilvusClient:
        if self.client is None:
            raise Unavailable("milvus is not connected")
        return self.client

    def _meta_schema(self, fields: list[tuple[str, DataType, dict[str, Any]]]) -> Any:
        schema = self._c().create_schema(auto_id=False, enable_dynamic_field=False)
        for name, dtype, extra in fields:
            schema.add_field(name, dtype, **extra)
        schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)
        return schema

    def _ensure_collections(self) -> None:
        c = self._c()
        if not c.has_collection(self.lists):
            schema = self._meta_schema(
                [
                    ("name", DataType.VARCHAR, {"is_primary": True, "max_length": 64}),
                    ("description", DataType.VARCHAR, {"max_length": 1024}),
                    ("kind", DataType.INT64, {}),
                    ("model_version", DataType.VARCHAR, {"max_length": 64}),
                    ("created_at", DataType.INT64, {}),
                ]
            )
            self._create(self.lists, schema, "_v", "FLAT", "L2", {})
        if not c.has_collection(self.subjects):
            schema = self._meta_schema(
                [
                    ("key", DataType.VARCHAR, {"is_primary": True, "max_length": 200}),
                    ("watchlist", DataType.VARCHAR, {"max_length": 64}),
                    ("subject_id", DataType.VARCHAR, {"max_length": 128}),
                    ("display_name", DataType.VARCHAR, {"max_length": 256}),
                    ("category", DataType.VARCHAR, {"max_length": 64}),
                    ("reason", DataType.VARCHAR, {"max_length": 1024}),
                    ("expires_at", DataType.INT64, {}),
                    ("added_by", DataType.VARCHAR, {"max_length": 256}),
                    ("external_ref", DataType.VARCHAR, {"max_length": 256}),
                    ("idempotency_key", DataType.VARCHAR, {"max_length": 128}),
                    ("created_at", DataType.INT64, {}),
                ]
            )
            self._create(self.subjects, schema, "_v", "FLAT", "L2", {})
        if not c.has_collection(self.templates):
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("template_id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("watchlist", DataType.VARCHAR, max_length=64)
            schema.add_field("subject_id", DataType.VARCHAR, max_length=128)
            schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.settings.dimension)
            schema.add_field("model_version", DataType.VARCHAR, max_length=64)
            schema.add_field("quality", DataType.FLOAT)
            schema.add_field("source", DataType.VARCHAR, max_length=512)
            schema.add_field("created_at", DataType.INT64)
            s = self.settings
            self._create(self.templates, schema, "embedding", s.index_type, "COSINE", dict(s.index_params))
        else:
            dim = self.template_dimension()
            if dim != self.settings.dimension:
                raise Unavailable(
                    f"templates collection {self.templates} holds dimension {dim}, the service is "
                    f"configured for {self.settings.dimension}; use another FACEGATE_WATCHLIST_COLLECTION_PREFIX"
                )

    def _create(self, name: str, schema: Any, vfield: str, itype: str, metric: str, params: dict) -> None:
        c = self._c()
        index = c.prepare_index_params()
        index.add_index(vfield, index_type=itype, metric_type=metric, params=params)
        c.create_collection(name, schema=schema, index_params=index, consistency_level="Session")
        log.info("created collection", extra={"collection": name, "index_type": itype})

    def template_dimension(self) -> int:
        info = self._c().describe_collection(self.templates)
        for f in info["fields"]:
            if f["name"] == "embedding":
                return int(f["params"]["dim"])
        raise Unavailable(f"templates collection {self.templates} has no embedding field")

    def index_info(self) -> dict[str, Any]:
        return dict(self._c().describe_index(self.templates, "embedding"))

    # -- consistency -------------------------------------------------------------------------------

    def barrier(self, *collections: str) -> None:
        """One Strong read of each collection (default: all three), at once: afterwards every write
        to them acknowledged so far is visible to every read of them. Not needed on Lite."""
        if self.settings.is_lite:
            return
        names = collections or (self.lists, self.subjects, self.templates)
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(self._strong_read, names))

    def _strong_read(self, collection: str) -> None:
        pk = {self.lists: "name", self.subjects: "key", self.templates: "template_id"}[collection]
        self._c().query(
            collection, filter=f'{pk} != ""', output_fields=[pk], limit=1, consistency_level="Strong"
        )

    # -- watchlists --------------------------------------------------------------------------------

    def put_list(self, row: ListRow) -> None:
        """The list's templates partition first, so a stored list always has one."""
        c = self._c()
        part = partition_of(row.name)
        if not c.has_partition(self.templates, part):
            c.create_partition(self.templates, part)
        c.insert(self.lists, [{**row.__dict__, "_v": DUMMY}])
        self._partitioned[row.name] = True

    def all_lists(self) -> list[ListRow]:
        rows = self._c().query(
            self.lists,
            filter='name != ""',
            output_fields=["name", "description", "kind", "model_version", "created_at"],
            consistency_level="Session",
        )
        return [ListRow(**{k: r[k] for k in ListRow.__dataclass_fields__}) for r in rows]

    def delete_list(self, name: str) -> None:
        c = self._c()
        c.delete(self.templates, filter=f'watchlist == "{name}"')
        c.delete(self.subjects, filter=f'watchlist == "{name}"')
        c.delete(self.lists, ids=[name])
        self.barrier(self.templates, self.subjects, self.lists)
        self._partitioned.pop(name, None)
        self._drop_partition(name)

    def _drop_partition(self, name: str) -> None:
        """Best effort: the partition is empty by now; if it stays (logged), a list created again
        under this name reuses it. A server drops only a released partition."""
        c, part = self._c(), partition_of(name)
        try:
            if c.has_partition(self.templates, part):
                if not self.settings.is_lite:
                    c.release_partitions(self.templates, [part])
                c.drop_partition(self.templates, part)
        except MilvusException as exc:
            log.warning("empty partition kept", extra={"partition": part, "error": exc.message})

    # -- subjects and templates --------------------------------------------------------------------

    def count(self, collection: str, expr: str) -> int:
        rows = self._c().query(
            collection, filter=expr, output_fields=["count(*)"], consistency_level="Session"
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def put_subject(self, subject: SubjectRow, templates: list[TemplateRow]) -> None:
        """Templates first: a subject row exists only once its templates are stored."""
        if templates:
            self.put_templates(templates)
        self._c().insert(self.subjects, [{"key": subject.key, **subject.__dict__, "_v": DUMMY}])

    def put_templates(self, templates: list[TemplateRow]) -> None:
        by_list: dict[str, list[dict[str, Any]]] = {}
        for t in templates:
            row = {k: v for k, v in t.__dict__.items() if k != "embedding"}
            row["embedding"] = np.asarray(t.embedding, dtype=np.float32).tolist()
            by_list.setdefault(t.watchlist, []).append(row)
        for name, rows in by_list.items():
            self._c().insert(self.templates, rows, partition_name=self.insert_partition(name))

    def insert_partition(self, watchlist: str) -> str:
        """Where new templates of ``watchlist`` go, looked up now (never cached: a list may have
        been dropped and created again, with a partition, by another replica)."""
        part = partition_of(watchlist)
        has = bool(self._c().has_partition(self.templates, part))
        self._partitioned[watchlist] = has
        return part if has else "_default"

    def get_subject(self, watchlist: str, sid: str) -> SubjectRow | None:
        rows = self._c().get(
            self.subjects,
            ids=[subject_key(watchlist, sid)],
            output_fields=list(SubjectRow.__dataclass_fields__),
            consistency_level="Session",
        )
        return SubjectRow(**{k: rows[0][k] for k in SubjectRow.__dataclass_fields__}) if rows else None

    def get_subjects(self, keys: list[str]) -> dict[str, SubjectRow]:
        if not keys:
            return {}
        rows = self._c().get(
            self.subjects,
            ids=keys,
            output_fields=list(SubjectRow.__dataclass_fields__),
            consistency_level="Session",
        )
        out = {}
        for r in rows:
            row = SubjectRow(**{k: r[k] for k in SubjectRow.__dataclass_fields__})
            out[row.key] = row
        return out

    def find_by_idempotency_key(self, watchlist: str, key: str) -> SubjectRow | None:
        rows = self._c().query(
            self.subjects,
            filter=f'watchlist == "{watchlist}" and idempotency_key == "{key}"',
            output_fields=list(SubjectRow.__dataclass_fields__),
            limit=1,
            consistency_level="Session",
        )
        return SubjectRow(**{k: rows[0][k] for k in SubjectRow.__dataclass_fields__}) if rows else None

    def templates_of(self, watchlist: str, sid: str) -> list[TemplateRow]:
        return self._template_rows(f'watchlist == "{watchlist}" and subject_id == "{sid}"')

    def templates_for_subjects(self, sids: list[str]) -> list[TemplateRow]:
        return self._template_rows(f"subject_id in {quoted(sids)}")

    def _template_rows(self, expr: str) -> list[TemplateRow]:
        """Template metadata (no vectors) matching ``expr``, oldest first."""
        fields = [k for k in TemplateRow.__dataclass_fields__ if k != "embedding"]
        rows = self._c().query(
            self.templates,
            filter=expr,
            output_fields=fields,
            limit=16384,
            consistency_level="Session",
        )
        out = [TemplateRow(**{k: r[k] for k in fields}) for r in rows]
        out.sort(key=lambda t: (t.created_at, t.template_id))
        return out

    def delete_templates_of(self, watchlist: str, sid: str) -> None:
        """Delete without a barrier: only used before inserting rows with later timestamps."""
        self._c().delete(self.templates, filter=f'watchlist == "{watchlist}" and subject_id == "{sid}"')

    def delete_subject(self, watchlist: str, sid: str, template_ids: list[str] | None = None) -> None:
        """Templates, then the subject row, then a barrier. Known ids skip Lite's full-scan filter."""
        c = self._c()
        if template_ids is not None:
            if template_ids:
                c.delete(self.templates, ids=template_ids)
        else:
            c.delete(self.templates, filter=f'watchlist == "{watchlist}" and subject_id == "{sid}"')
        c.delete(self.subjects, ids=[subject_key(watchlist, sid)])
        self.barrier(self.templates, self.subjects)

    def subject_keys(self, expr: str) -> list[str]:
        return sorted(r["key"] for r in self._iterate(self.subjects, expr, ["key"]))

    def iter_templates(self, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every template row with these fields; on Lite in key ranges of about ``lite_page_rows``."""
        fields = list(fields)
        expr = 'template_id != ""'
        if not self.settings.is_lite:
            yield from self._iterate(self.templates, expr, fields)
            return
        for part in self._key_ranges(self.templates, expr, "template_id"):
            yield from self._iterate(self.templates, part, fields)

    def _key_ranges(self, collection: str, expr: str, key: str) -> list[str]:
        """``expr`` split into disjoint ranges of ``key`` (the primary key) of ``lite_page_rows`` rows
        each, which together cover every row, so that no one Lite reply is too large.

        The Lite server refuses a reply over 256 MB: at 1M templates one query is 620 MB and the
        service could not start. The keys alone are small (~20 MB at 1M), so they are read first and
        every ``lite_page_rows``-th one becomes a bound, whatever the ids look like. A range filter is
        one vectorised pass that materialises only its own rows (16 ranges: 4.8 s against 3.1 s for
        one query at 100k), unlike offset paging, which materialises every skipped row again.
        """
        page = self.settings.lite_page_rows
        keys = sorted(r[key] for r in self._iterate(collection, expr, [key]))
        if len(keys) <= page:
            return [expr]
        bounds = [_literal(k) for k in keys[page::page]]
        lows: list[str | None] = [None, *bounds]
        highs: list[str | None] = [*bounds, None]
        parts = []
        for low, high in zip(lows, highs, strict=True):
            clauses = [f"({expr})"]
            if low is not None:
                clauses.append(f"{key} >= {low}")
            if high is not None:
                clauses.append(f"{key} < {high}")
            parts.append(" and ".join(clauses))
        return parts

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every matching row. Lite: one query (its iterator re-scans all rows per batch: 619 s for
        100k rows, against ~5 s for one query; callers split big reads with ``_key_ranges``);
        a server: the query iterator (results are capped)."""
        if self.settings.is_lite:
            yield from self._c().query(
                collection, filter=expr, output_fields=fields, consistency_level="Session"
            )
            return
        it = self._c().query_iterator(collection, batch_size=ITER_BATCH, filter=expr, output_fields=fields)
        try:
            while True:
                batch = it.next()
                if not batch:
                    break
                yield from batch
        finally:
            it.close()

    def all_subjects(self) -> list[SubjectRow]:
        fields = list(SubjectRow.__dataclass_fields__)
        return [
            SubjectRow(**{k: r[k] for k in fields}) for r in self._iterate(self.subjects, 'key != ""', fields)
        ]

    # -- search in Milvus --------------------------------------------------------------------------

    def search(self, probes: np.ndarray, watchlists: list[str], limit: int) -> list[list[dict[str, Any]]]:
        params = dict(self.settings.search_params)
        if "ef" in params:
            params["ef"] = max(params["ef"], limit)
        where: dict[str, Any] = {"filter": f"watchlist in {quoted(watchlists)}"}
        if self.partitioned(watchlists):
            where = {"partition_names": [partition_of(n) for n in watchlists]}
        try:
            res = self._c().search(
                self.templates,
                data=[p.tolist() for p in probes],
                limit=limit,
                output_fields=["template_id", "watchlist", "subject_id"],
                search_params={"metric_type": "COSINE", "params": params},
                consistency_level=self._consistency,
                **where,
            )
        except MilvusException:
            self._partitioned.clear()  # a partition may be gone with its list: look again next time
            raise
        return [list(hits) for hits in res]

    def partitioned(self, watchlists: list[str]) -> bool:
        """Whether every one of these lists keeps its templates in its own partition."""
        known = {n: self._partitioned.get(n) for n in watchlists}
        if None in known.values():
            parts = set(self._c().list_partitions(self.templates))
            known = {n: partition_of(n) in parts for n in watchlists}
            self._partitioned.update(known)
        return all(known.values())
