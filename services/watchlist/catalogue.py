"""Where the service reads subjects and template metadata from: Milvus itself, or a copy in memory.

With Milvus Lite the service is the only process that can open the data, so a copy kept in memory
(loaded from Milvus at start, changed after every acknowledged write) is exact - and it matters:
Lite answers a filtered query or a count with a Python pass over every row (a count takes ~3.7 s
at 100k rows), which would put seconds into every enrolment's idempotency check. With a server,
other replicas write too, so every read goes to Milvus.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

from services.watchlist.store import MilvusStore, SubjectRow, TemplateRow, subject_key

TEMPLATE_META = ["template_id", "watchlist", "subject_id", "model_version", "quality", "source", "created_at"]


class Catalogue(Protocol):
    def find_by_key(self, watchlist: str, key: str) -> SubjectRow | None: ...
    def get_subject(self, watchlist: str, sid: str) -> SubjectRow | None: ...
    def get_subjects(self, keys: list[str]) -> dict[str, SubjectRow]: ...
    def templates_of(self, watchlist: str, sid: str) -> list[TemplateRow]: ...
    def templates_for(self, keys: list[str]) -> dict[str, list[TemplateRow]]: ...
    def subject_keys(self, watchlist: str, category: str, after: str) -> list[str]: ...
    def counts(self, watchlist: str) -> tuple[int, int]: ...
    def may_have_orphans(self, watchlist: str, sid: str) -> bool: ...
    def enrolled(self, subject: SubjectRow, templates: list[TemplateRow]) -> None: ...
    def added(self, templates: list[TemplateRow]) -> None: ...
    def removed(self, watchlist: str, sid: str) -> None: ...
    def dropped(self, watchlist: str) -> None: ...


class MilvusCatalogue:
    """Every read is a Milvus query (Session consistency: this client's writes are visible)."""

    def __init__(self, store: MilvusStore) -> None:
        self.store = store

    def find_by_key(self, watchlist: str, key: str) -> SubjectRow | None:
        return self.store.find_by_idempotency_key(watchlist, key)

    def get_subject(self, watchlist: str, sid: str) -> SubjectRow | None:
        return self.store.get_subject(watchlist, sid)

    def get_subjects(self, keys: list[str]) -> dict[str, SubjectRow]:
        return self.store.get_subjects(keys)

    def templates_of(self, watchlist: str, sid: str) -> list[TemplateRow]:
        return self.store.templates_of(watchlist, sid)

    def templates_for(self, keys: list[str]) -> dict[str, list[TemplateRow]]:
        out: dict[str, list[TemplateRow]] = defaultdict(list)
        sids = sorted({k.split("/", 1)[1] for k in keys})
        wanted = set(keys)
        if sids:
            for t in self.store.templates_for_subjects(sids):
                key = subject_key(t.watchlist, t.subject_id)
                if key in wanted:
                    out[key].append(t)
        return out

    def subject_keys(self, watchlist: str, category: str, after: str) -> list[str]:
        clauses = ['key != ""']
        if watchlist:
            clauses.append(f'watchlist == "{watchlist}"')
        if category:
            clauses.append(f'category == "{category}"')
        if after:
            clauses.append(f'key > "{after}"')
        return self.store.subject_keys(" and ".join(clauses))

    def counts(self, watchlist: str) -> tuple[int, int]:
        return (
            self.store.count(self.store.subjects, f'watchlist == "{watchlist}"'),
            self.store.count(self.store.templates, f'watchlist == "{watchlist}"'),
        )

    def may_have_orphans(self, watchlist: str, sid: str) -> bool:
        return True

    def enrolled(self, subject: SubjectRow, templates: list[TemplateRow]) -> None:
        pass

    def added(self, templates: list[TemplateRow]) -> None:
        pass

    def removed(self, watchlist: str, sid: str) -> None:
        pass

    def dropped(self, watchlist: str) -> None:
        pass


class MemoryCatalogue:
    """Subjects and template metadata of every list, loaded from Milvus and kept in step with it.

    Only correct while this process is the sole writer (Milvus Lite); the servicer changes it after
    each acknowledged Milvus write, under its write lock.
    """

    def __init__(self) -> None:
        self.subjects: dict[str, SubjectRow] = {}
        self.templates: dict[str, list[TemplateRow]] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.orphans: set[str] = set()  # subjects with templates but no subject row (half-written)

    def load(self, subjects: list[SubjectRow], templates: list[TemplateRow]) -> None:
        self.subjects = {s.key: s for s in subjects}
        self.by_key = {(s.watchlist, s.idempotency_key): s.key for s in subjects if s.idempotency_key}
        self.templates = defaultdict(list)
        self.orphans = set()
        for t in templates:
            key = subject_key(t.watchlist, t.subject_id)
            if key in self.subjects:
                self.templates[key].append(t)
            else:
                self.orphans.add(key)
        for rows in self.templates.values():
            rows.sort(key=lambda t: (t.created_at, t.template_id))
        self.templates = dict(self.templates)

    def find_by_key(self, watchlist: str, key: str) -> SubjectRow | None:
        found = self.by_key.get((watchlist, key))
        return self.subjects.get(found) if found else None

    def get_subject(self, watchlist: str, sid: str) -> SubjectRow | None:
        return self.subjects.get(subject_key(watchlist, sid))

    def get_subjects(self, keys: list[str]) -> dict[str, SubjectRow]:
        return {k: self.subjects[k] for k in keys if k in self.subjects}

    def templates_of(self, watchlist: str, sid: str) -> list[TemplateRow]:
        return list(self.templates.get(subject_key(watchlist, sid), []))

    def templates_for(self, keys: list[str]) -> dict[str, list[TemplateRow]]:
        return {k: list(self.templates.get(k, [])) for k in keys}

    def subject_keys(self, watchlist: str, category: str, after: str) -> list[str]:
        prefix = f"{watchlist}/" if watchlist else ""
        return sorted(
            k
            for k, s in self.subjects.items()
            if k.startswith(prefix) and (not category or s.category == category) and k > after
        )

    def counts(self, watchlist: str) -> tuple[int, int]:
        prefix = f"{watchlist}/"
        keys = [k for k in self.subjects if k.startswith(prefix)]
        return len(keys), sum(len(self.templates.get(k, [])) for k in keys)

    def may_have_orphans(self, watchlist: str, sid: str) -> bool:
        return subject_key(watchlist, sid) in self.orphans

    def enrolled(self, subject: SubjectRow, templates: list[TemplateRow]) -> None:
        self.orphans.discard(subject.key)
        self.subjects[subject.key] = subject
        self.templates[subject.key] = [_meta(t) for t in templates]
        if subject.idempotency_key:
            self.by_key[(subject.watchlist, subject.idempotency_key)] = subject.key

    def added(self, templates: list[TemplateRow]) -> None:
        for t in templates:
            self.templates.setdefault(subject_key(t.watchlist, t.subject_id), []).append(_meta(t))

    def removed(self, watchlist: str, sid: str) -> None:
        key = subject_key(watchlist, sid)
        subject = self.subjects.pop(key, None)
        self.templates.pop(key, None)
        self.orphans.discard(key)
        if subject is not None and subject.idempotency_key:
            self.by_key.pop((watchlist, subject.idempotency_key), None)

    def dropped(self, watchlist: str) -> None:
        prefix = f"{watchlist}/"
        for key in [k for k in self.subjects if k.startswith(prefix)]:
            self.removed(watchlist, key[len(prefix) :])
        self.orphans = {k for k in self.orphans if not k.startswith(prefix)}


def _meta(t: TemplateRow) -> TemplateRow:
    """The template without its vector (the index holds vectors)."""
    return TemplateRow(**{k: getattr(t, k) for k in TEMPLATE_META})
