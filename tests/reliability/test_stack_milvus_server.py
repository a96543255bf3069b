"""kill -9 of the Milvus server under the kiosk load (issue 13, server mode): the stack as
`make run` starts it, with the watchlist service on a real Milvus server (MILVUS_URI), so every
gate decision's screening is a search in Milvus. 20 kiosks send travellers who would pass; the
Milvus server is killed, stays down a few seconds, and is started again on the same ports and data.
Every decision answered meanwhile must be REFER (screening did not run) or a clear status, never
an ACCEPT; the stack decides again by itself once Milvus is back (no restart of any service), and
every answered decision is on the audit record.

The full run only (`make test-reliability`): a second stack and a Milvus server take minutes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.reliability.conftest import (
    BUDGET,
    FULL,
    RECOVERY_LIMIT_S,
    Figures,
    Launched,
    gateway_channel,
    stack,
)
from tests.reliability.milvus_handle import MilvusHandle, running_milvus
from tests.reliability.test_stack import (
    Accounting,
    Baseline,
    Kiosks,
    answer,
    audit_by_id,
    recovered,
    set_up_wanted_list,
    take_baseline,
    wrong_accepts,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (FULL and BUDGET.milvus_server),
        reason="the full run only (make test-reliability): a second stack and a Milvus server",
    ),
]

#: How long the Milvus server stays down before it is started again (the kiosks meet the outage).
DOWN_S = 5.0
#: Kiosk load kept up after the stack decides again, so the recovered path is loaded too.
AFTER_S = 10.0


@pytest.fixture(scope="module")
def milvus(tmp_path_factory) -> Iterator[MilvusHandle]:
    with running_milvus(tmp_path_factory.mktemp("milvus-server")) as handle:
        yield handle


@pytest.fixture(scope="module")
def server_stack(tmp_path_factory, milvus: MilvusHandle) -> Iterator[Launched]:
    var = tmp_path_factory.mktemp("reliability-server") / "var"
    with stack(var, {"MILVUS_URI": milvus.uri}) as running:
        running.accounting = Accounting()  # its own audit book: test_stack's counts the Lite stack
        yield running


@pytest.mark.timeout(1800)
def test_kill_9_of_the_milvus_server_under_kiosk_load(
    server_stack: Launched, milvus: MilvusHandle, figures: Figures
) -> None:
    launched, book = server_stack, server_stack.accounting
    set_up_wanted_list(launched)
    baseline = Baseline()
    take_baseline(launched, baseline, figures, "server.baseline")
    assert baseline.answers["wanted_person"] == "REFER", baseline.answers  # screening in Milvus works
    records_before = len(audit_by_id(launched))
    expected_before, maybe_before = book.expected, book.maybe
    restarts_before = {label: e["restarts"] for label, e in launched.status().items()}

    with Kiosks(launched, BUDGET.kiosks, 3600, 100_000, {"same_person": 6}) as kiosks:
        time.sleep(5)
        killed_at = time.monotonic()
        milvus.kill()
        figures.add("faults_injected")
        time.sleep(DOWN_S)
        milvus.start()
        milvus_up = time.monotonic()
        back_at = wait_deciding(launched, milvus_up + RECOVERY_LIMIT_S)
        time.sleep(AFTER_S)
    results = kiosks.results
    figures.add("fault_phase_requests", len(results))
    for r in results:
        figures.status("server.faults", answer(r))
    recovery = (back_at or time.monotonic()) - killed_at
    figures.recovery["milvus server (kiosk load)"] = round(recovery, 1)
    if back_at is None:
        figures.add("wedged_processes")
    assert back_at is not None, f"no ACCEPT within {RECOVERY_LIMIT_S:.0f}s of Milvus being back"

    wrong = wrong_accepts(launched, results, baseline)
    figures.add("wrong_accepts", len(wrong))
    assert not wrong, wrong
    unexpected = [r for r in results if r.code not in ("OK", "RESOURCE_EXHAUSTED", baseline.answers[r.case])]
    figures.add("unexpected_errors", len(unexpected))
    assert not unexpected, Counter((r.case, r.code) for r in unexpected)

    # The outage was met: travellers who pass one at a time were referred while Milvus was down.
    during = [r for r in results if r.ended >= killed_at and r.started <= back_at]
    referred = [r for r in during if baseline.answers[r.case] == "ACCEPT" and answer(r) != "ACCEPT"]
    figures.notes["milvus_server_under_load"] = {
        "down_s (killed, then started again after)": DOWN_S,
        "milvus_start_s": round(milvus_up - killed_at - DOWN_S, 1),
        "deciding_again_after_milvus_up_s": round(back_at - milvus_up, 1),
        "answers_while_affected": dict(Counter(f"{r.case}: {answer(r)}" for r in during)),
        "requests": len(results),
        "service_restarts": {
            label: e["restarts"] - restarts_before.get(label, 0) for label, e in launched.status().items()
        },
    }
    assert referred, "no request met the outage: the fault was not exercised"

    records = audit_by_id(launched)
    lost = {r.decision_id for r in results if r.decision_id} - records.keys()
    figures.add("lost_audit_records", len(lost))
    assert not lost
    added = len(records) - records_before
    expected = book.expected - expected_before
    assert expected <= added <= expected + book.maybe - maybe_before, (added, expected)

    assert launched.wait_serving(60), "a process is wedged after the Milvus server came back"
    states = {label: e["state"] for label, e in launched.status().items()}
    assert set(states.values()) == {"serving"}, states


def wait_deciding(launched: Launched, deadline: float) -> float | None:
    """When every process is SERVING and a same-person request is ACCEPTed again (None: never)."""
    with gateway_channel(launched.target()) as probe:
        while time.monotonic() < deadline:
            if recovered(launched, "milvus-server", probe):
                return time.monotonic()
            time.sleep(0.5)
    return None
