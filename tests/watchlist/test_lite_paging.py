"""Milvus Lite read in pages: a start-up that reads every template never asks for one huge reply.

The Lite server refuses replies over 256 MB, so at 1M templates (620 MB) the service could not
start; reads are now split into key ranges of about ``lite_page_rows`` rows. A tiny page size
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
        odd_ids = ["", "-before-hex", "zz-after-hex", "s" + "f" * 31]
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
    assert len(ranges) == 256  # 44 rows at 2 a page need 22 ranges: two hex digits of prefix give 256
    assert len(ids) == len(set(ids)) == 44
    assert {"0", "-before-hex", "zz-after-hex", "s" + "f" * 31} <= set(ids)
    replies: list[int] = []  # rows in each reply Lite sends about templates during the restart
    query = MilvusClient.query

    def counted(client, collection_name, *args, **kwargs):
        rows = query(client, collection_name, *args, **kwargs)
        if collection_name.endswith("templates"):
            replies.append(len(rows))
        return rows

    monkeypatch.setattr(MilvusClient, "query", counted)
    with running_service(settings) as (_service, stub):  # the start-up rebuild reads in pages too
        # uuid4 ids spread ~0.2 rows over each range; one unpaged read would return all 44
        assert replies and max(replies) <= 8, replies
        for subject_id, v in zip(enrolled, faces, strict=True):
            found = search(stub, [v], ["paged"]).results[0].candidates
            assert [c.subject_id for c in found] == [subject_id]
