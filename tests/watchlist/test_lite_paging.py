"""Milvus Lite read in pages: a start-up that reads every template never asks for one huge reply.

The Lite server refuses replies over 256 MB, so at 1M templates (620 MB) the service could not
start; reads are now split into key ranges of ``lite_page_rows`` rows. A tiny page size
here makes the same code split a small store into many ranges.
"""

from __future__ import annotations

import numpy as np
from pymilvus import MilvusClient

from services.watchlist.store import TemplateRow, now_ms
from tests.watchlist.conftest import Backend, running_service
from tests.watchlist.helpers import VERSION, create, enroll, search, unit


def test_a_paged_start_up_reads_every_template_exactly_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(21)
    settings = Backend("lite", tmp_path).settings(store="paged", lite_page_rows=2)
    faces = unit(rng, 40)
    with running_service(settings) as (service, stub):
        create(stub, "paged")
        enrolled = [enroll(stub, "paged", [v]).subject.subject_id for v in faces]
        odd_ids = ["", "-before-hex", "zz-after-hex", "s" + "f" * 31, 'q"uote', "back\\slash", "t12"]
        service.store.put_templates(
            [
                TemplateRow(
                    template_id=tid or "0",
                    watchlist="paged",
                    subject_id="nobody",
                    model_version=VERSION,
                    quality=1.0,
                    source="test",
                    created_at=now_ms(),
                    embedding=unit(rng),
                )
                for tid in odd_ids
            ]
        )
        ranges = service.store._key_ranges(service.store.templates, 'template_id != ""', "template_id")
        ids = [row["template_id"] for row in service.store.iter_templates(["template_id"])]
    assert len(ranges) == 24  # 47 rows, 2 a page
    assert len(ids) == len(set(ids)) == 47
    assert {"0", "-before-hex", "zz-after-hex", "s" + "f" * 31, 'q"uote', "back\\slash", "t12"} <= set(ids)
    replies: list[int] = []  # rows in each reply Lite sends with template data during the restart
    query = MilvusClient.query

    def counted(client, collection_name, *args, **kwargs):
        rows = query(client, collection_name, *args, **kwargs)
        if collection_name.endswith("templates") and kwargs.get("output_fields") != ["template_id"]:
            replies.append(len(rows))  # (the ids alone are read in one reply on purpose: they are small)
        return rows

    monkeypatch.setattr(MilvusClient, "query", counted)
    with running_service(settings) as (_service, stub):  # the start-up rebuild reads in pages too
        assert replies and max(replies) <= 2, replies  # one unpaged read would return all 47
        for subject_id, v in zip(enrolled, faces, strict=True):
            found = search(stub, [v], ["paged"]).results[0].candidates
            assert [c.subject_id for c in found] == [subject_id]
