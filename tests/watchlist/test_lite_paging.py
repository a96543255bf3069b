"""Milvus Lite read in pages: a start-up that reads every template never asks for one huge reply.

The Lite server refuses replies over 256 MB, so at 1M templates (620 MB) the service could not
start; reads are now split into key ranges of about ``lite_page_rows`` rows. A tiny page size
here makes the same code split a small store into many ranges.
"""

from __future__ import annotations

import numpy as np

from services.watchlist.store import TemplateRow, now_ms
from tests.watchlist.conftest import Backend, running_service
from tests.watchlist.helpers import VERSION, create, enroll, search, unit


def test_a_paged_start_up_reads_every_template_exactly_once(tmp_path):
    rng = np.random.default_rng(21)
    settings = Backend("lite", tmp_path).settings(store="paged", lite_page_rows=4)
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
        ids = [row["template_id"] for row in service.store.iter_templates(with_vectors=False)]
    assert len(ranges) == 16  # 44 rows at 4 a page need 11 ranges: one hex digit of prefix gives 16
    assert len(ids) == len(set(ids)) == 44
    assert {"0", "-before-hex", "zz-after-hex", "s" + "f" * 31} <= set(ids)
    with running_service(settings) as (_service, stub):  # the start-up rebuild reads in pages too
        for subject_id, v in zip(enrolled, faces, strict=True):
            found = search(stub, [v], ["paged"]).results[0].candidates
            assert [c.subject_id for c in found] == [subject_id]
