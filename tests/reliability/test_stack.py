"""The whole stack as `make run` starts it (real processes, the launcher supervising), under load
and kill -9 faults, called with every key, fed generated fields, then checked for private data in
its logs and metrics and for a complete, verifiable audit trail.

The tests run in file order on one stack and build on each other: the audit accounting at the end
counts every call made before it. Budgets: conftest.BUDGET.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facegate.audit import read_records
from facegate.endpoints import SERVICE_NAMES
from facegate.v1 import common_pb2, docverify_pb2, gateway_pb2, watchlist_pb2
from gateway.auth import METHOD_ROLES
from gateway.keys import ROLES, add_key, revoke_key
from gateway.records import outcome_name
from tests.reliability.conftest import (
    BUDGET,
    FULL,
    LAST_DETAILS,
    RECOVERY_LIMIT_S,
    Figures,
    Launched,
    call,
    dev_names,
    gateway_channel,
    scan_text,
)
from tests.support import FACES, REPO

pytestmark = pytest.mark.slow

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
METHODS = {
    m.name: (message_factory.GetMessageClass(m.input_type), message_factory.GetMessageClass(m.output_type))
    for m in SERVICE.methods
}
DECISION_METHODS = {"VerifyTraveller", "Identify", "Compare"}
ADMIN_METHODS = {m for m, roles in METHOD_ROLES.items() if roles == {"admin"}}
#: A call whose outcome the client could not see (the gateway may or may not have written its record).
UNSEEN = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"}

TRAVELLER = FACES / "images/Amram_Mitzna"
OTHER_PERSON = FACES / "images/Anne_McLellan/Anne_McLellan_0002.jpg"
WANTED_LIVE = FACES / "images/Anne_McLellan/Anne_McLellan_0001.jpg"
#: Names this suite sends as display names: they must never reach a log line or a metric.
DISPLAY_NAMES = ("Anne McLellan", "Amram Mitzna")


# ---- audit accounting: what the gateway must have recorded for the calls we made ----------------


def audited(method: str, code: str, details: str = "") -> bool:
    """Does the gateway write an audit record for a call of ``method`` answered ``code``?
    Decisions when answered; admin actions whatever their outcome (not when the gateway refused
    them at capacity, before the action began); refused calls (no/unknown/revoked key, wrong
    role) always."""
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return True
    if method in DECISION_METHODS:
        return code == "OK"
    if method in ADMIN_METHODS:
        return not (code == "RESOURCE_EXHAUSTED" and "at capacity" in details)
    return False


@dataclass
class Accounting:
    lock: threading.Lock = field(default_factory=threading.Lock)
    expected: int = 0  # records the gateway must have written
    per_method: Counter = field(default_factory=Counter)  # the same, by RPC
    maybe: int = 0  # calls that may or may not have left one (the client saw no answer)
    decision_ids: set[str] = field(default_factory=set)  # every decision a client was given

    def add(self, method: str, code: str, decision_id: str = "") -> None:
        details = getattr(LAST_DETAILS, "value", "") if code != "OK" else ""
        with self.lock:
            if audited(method, code, details):
                self.expected += 1
                self.per_method[method] += 1
            elif code in UNSEEN and (method in DECISION_METHODS or method in ADMIN_METHODS):
                self.maybe += 1
            if decision_id:
                self.decision_ids.add(decision_id)


ACCOUNTING = Accounting()


def gw_call(launched: Launched, ch, method: str, request, role: str | None, **kw):
    key = launched.keys[role] if role else None
    code, response = call(ch, method, request, METHODS[method][1], key, **kw)
    decision_id = ""
    if code == "OK" and method in DECISION_METHODS:
        decision_id = response.decision.decision_id
    (launched.accounting or ACCOUNTING).add(method, code, decision_id)
    return code, response


# ---- the kiosk requests ----------------------------------------------------------------------------


def jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return out.getvalue()


def frame(photo) -> bytes:
    from tests.gateway.conftest import gate_frame

    return gate_frame(photo)


@cache
def cases() -> dict[str, tuple[int, gateway_pb2.VerifyTravellerRequest]]:
    """name -> (weight in the mix, request): same person, different person, bad captures."""
    from tests.docverify.dg2_builder import dg2_for_image
    from tests.docverify.specimens import valid_specimens

    live = frame(TRAVELLER / "Amram_Mitzna_0001.jpg")
    portrait = (TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()
    mrz = next(s for s in valid_specimens() if s["format"] == "TD3" and s["issuing_state"] == "UTO")
    mrz_text = "\n".join(mrz["mrz"])
    w, h = Image.open(io.BytesIO(portrait)).size

    def req(live_bytes: bytes, gate: str, **document) -> gateway_pb2.VerifyTravellerRequest:
        if "portrait_image" not in document and "dg2" not in document:
            document["portrait_image"] = common_pb2.Image(data=portrait)
        return gateway_pb2.VerifyTravellerRequest(
            gate_id=gate,
            document=docverify_pb2.VerifyRequest(live=common_pb2.Image(data=live_bytes), **document),
        )

    rng = np.random.default_rng(13)
    return {
        "same_person": (4, req(live, "gate-1")),
        "same_person_mrz": (2, req(live, "gate-2", mrz=mrz_text, decision_date="2012-01-01")),
        "same_person_dg2": (1, req(live, "gate-3", dg2=dg2_for_image(portrait, "JPEG", w, h))),
        "expired_document": (1, req(live, "gate-4", mrz=mrz_text, decision_date="2020-01-01")),
        "different_person": (
            2,
            req(live, "gate-5", portrait_image=common_pb2.Image(data=OTHER_PERSON.read_bytes())),
        ),
        "wanted_person": (
            1,
            req(
                frame(WANTED_LIVE), "gate-6", portrait_image=common_pb2.Image(data=OTHER_PERSON.read_bytes())
            ),
        ),
        "garbage_capture": (1, req(rng.bytes(5000), "gate-7")),
        "truncated_capture": (1, req(live[: len(live) // 3], "gate-8")),
        "empty_scene": (1, req(jpeg(np.full((720, 1280, 3), 120, np.uint8)), "gate-9")),
    }


@dataclass
class Result:
    case: str
    code: str
    outcome: str
    decision_id: str
    started: float
    ended: float


def verify(launched: Launched, ch, case: str, rid: str, timeout: float = 300) -> Result:
    started = time.monotonic()
    code, response = gw_call(
        launched, ch, "VerifyTraveller", cases()[case][1], "kiosk", timeout=timeout, rid=rid
    )
    outcome = outcome_name(response.decision.outcome) if response is not None else ""
    decision_id = response.decision.decision_id if response is not None else ""
    return Result(case, code, outcome, decision_id, started, time.monotonic())


def answer(r: Result) -> str:
    return r.outcome if r.code == "OK" else r.code


class Kiosks:
    """``n`` kiosk threads sending the case mix until ``stop`` is set, the time runs out or the
    request budget is spent. Each request has its own request id (no replays)."""

    def __init__(self, launched: Launched, n: int, seconds: float, max_requests: int, weights=None) -> None:
        self.launched, self.n, self.seconds, self.max_requests = launched, n, seconds, max_requests
        self.stop = threading.Event()
        self.results: list[Result] = []
        self.lock = threading.Lock()
        self.sent = 0
        names = list(cases())
        w = np.array([(weights or {}).get(c, cases()[c][0]) for c in names], float)
        self.names, self.p = names, w / w.sum()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _take(self) -> bool:
        with self.lock:
            if self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def _run(self, i: int) -> None:
        rng = np.random.default_rng(1000 + i)
        deadline = time.monotonic() + self.seconds
        with gateway_channel(self.launched.target()) as ch:
            n = 0
            while not self.stop.is_set() and time.monotonic() < deadline and self._take():
                n += 1
                case = str(rng.choice(self.names, p=self.p))
                r = verify(self.launched, ch, case, f"kiosk-{i}-{n}-{os.urandom(4).hex()}")
                with self.lock:
                    self.results.append(r)
                if r.code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                    time.sleep(0.2)  # a kiosk backs off a little before the next traveller

    def __enter__(self) -> Kiosks:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=400)
        hung = [t for t in self.threads if t.is_alive()]
        assert not hung, f"{len(hung)} kiosk threads still running after their bound"

    def join(self) -> None:
        self.__exit__()


# ---- shared state of the module's tests ------------------------------------------------------------


@dataclass
class Baseline:
    answers: dict[str, str] = field(default_factory=dict)  # case -> outcome or status code
    accept_reasons: dict[str, frozenset[str]] = field(default_factory=dict)  # case -> reason codes


BASELINE = Baseline()


def audit_by_id(launched: Launched) -> dict[str, dict]:
    return {r["decision_id"]: r for r in read_records(launched.audit_log)}


# ---- 1. who may call what --------------------------------------------------------------------------


def test_every_rpc_by_every_role_with_every_kind_of_key(launched: Launched, figures: Figures) -> None:
    """Each gateway RPC x each role x {no key, unknown key, revoked key, right key}, on the real
    stack: a key revoked in the key file stops working without a restart."""
    revoked = {}
    for role in ROLES:
        key, entry = add_key(launched.key_file, role, "reliability: revoked below")
        revoked[role] = (key, entry.key_id)
    time.sleep(1.5)  # the gateway re-reads the key file within a second
    with gateway_channel(launched.target()) as ch:
        for role, (key, _) in revoked.items():  # each worked before it was revoked
            method = next(m for m, roles in METHOD_ROLES.items() if role in roles)
            code, _ = call(ch, method, METHODS[method][0](), METHODS[method][1], key, timeout=60)
            ACCOUNTING.add(method, code)
            assert code not in ("UNAUTHENTICATED", "PERMISSION_DENIED"), (role, method, code)
        for _, key_id in revoked.values():
            revoke_key(launched.key_file, key_id)
        time.sleep(1.5)
        launched.keys.update({f"revoked-{r}": k for r, (k, _) in revoked.items()})
        unknown = "fg_" + os.urandom(24).hex()
        launched.keys["unknown"] = unknown
        wrong = []
        for method, roles in METHOD_ROLES.items():
            request_type, response_type = METHODS[method]
            for role in ROLES:
                for kind, key in (
                    ("none", None),
                    ("unknown", unknown),
                    ("revoked", revoked[role][0]),
                    ("right", launched.keys[role]),
                ):
                    code, _ = call(ch, method, request_type(), response_type, key, timeout=60)
                    ACCOUNTING.add(method, code)
                    figures.add("security_calls")
                    figures.status("security", code)
                    if kind != "right":
                        expected_ok = code == "UNAUTHENTICATED"
                    elif role in roles:
                        expected_ok = code not in (
                            "UNAUTHENTICATED",
                            "PERMISSION_DENIED",
                            "INTERNAL",
                            "UNKNOWN",
                        )
                    else:
                        expected_ok = code == "PERMISSION_DENIED"
                    if not expected_ok:
                        wrong.append((method, role, kind, code))
    figures.add("security_wrong_answers", len(wrong))
    assert not wrong, wrong


# ---- 2. load: 20 kiosks, the same answers as one at a time ---------------------------------------


def test_setup_a_wanted_list(launched: Launched) -> None:
    """Screening has something to find: the other person is on a WANTED list (by the admin RPCs)."""
    set_up_wanted_list(launched)


def set_up_wanted_list(launched: Launched) -> None:
    with gateway_channel(launched.target()) as ch:
        code, _ = gw_call(
            launched,
            ch,
            "CreateWatchlist",
            watchlist_pb2.CreateWatchlistRequest(name="wanted", kind=watchlist_pb2.WATCHLIST_KIND_WANTED),
            "admin",
            timeout=60,
        )
        assert code == "OK", code
        code, _ = gw_call(
            launched,
            ch,
            "EnrollFromPhotos",
            gateway_pb2.EnrollFromPhotosRequest(
                watchlist="wanted",
                idempotency_key="reliability-wanted-1",
                info=watchlist_pb2.SubjectInfo(display_name=DISPLAY_NAMES[0], category="wanted"),
                photos=[common_pb2.Image(data=frame(OTHER_PERSON))],
            ),
            "admin",
            timeout=120,
        )
        assert code == "OK", code


def take_baseline(launched: Launched, baseline: Baseline, figures: Figures, phase: str) -> None:
    """Each case sent alone: its answer, and the reasons a complete ACCEPT carries (every check)."""
    with gateway_channel(launched.target()) as ch:
        for case in cases():
            r = verify(launched, ch, case, f"baseline-{case}-{os.urandom(4).hex()}")
            baseline.answers[case] = answer(r)
            figures.status(phase, answer(r))
    assert baseline.answers["same_person"] == "ACCEPT", baseline.answers
    assert baseline.answers["different_person"] == "REFER", baseline.answers
    assert baseline.answers["garbage_capture"] == "INVALID_ARGUMENT", baseline.answers
    with gateway_channel(launched.target()) as ch:
        for case, expected in baseline.answers.items():
            if expected == "ACCEPT":
                r = verify(launched, ch, case, f"baseline2-{case}-{os.urandom(4).hex()}")
                baseline.accept_reasons[case] = frozenset(
                    x["code"] for x in audit_by_id(launched)[r.decision_id]["reasons"]
                )


def test_load_answers_match_one_at_a_time(launched: Launched, figures: Figures) -> None:
    take_baseline(launched, BASELINE, figures, "baseline")
    figures.notes["baseline"] = dict(BASELINE.answers)
    records = audit_by_id(launched)

    before = len(records)
    expected_before = ACCOUNTING.expected
    with Kiosks(launched, BUDGET.kiosks, BUDGET.load_seconds, BUDGET.load_max_requests) as kiosks:
        while any(t.is_alive() for t in kiosks.threads):
            launched.sample_rss()
            time.sleep(1)
    results = kiosks.results
    statuses = Counter(answer(r) for r in results)
    mismatched = [
        r for r in results if answer(r) != BASELINE.answers[r.case] and r.code != "RESOURCE_EXHAUSTED"
    ]
    unexpected = [
        r
        for r in results
        if r.code not in ("OK", "RESOURCE_EXHAUSTED") and r.code != BASELINE.answers[r.case]
    ]
    figures.add("load_requests", len(results))
    figures.add("load_back_pressure", statuses.get("RESOURCE_EXHAUSTED", 0))
    figures.add("mismatched_decisions", len(mismatched))
    figures.add("unexpected_errors", len(unexpected))
    for r in results:
        figures.status("load", answer(r))
    seconds = max(r.ended for r in results) - min(r.started for r in results)
    figures.notes["load"] = {
        "kiosks": BUDGET.kiosks,
        "seconds": round(seconds, 1),
        "requests": len(results),
        "decisions_per_s": round(sum(r.code == "OK" for r in results) / seconds, 2),
        "p50_s": round(float(np.percentile([r.ended - r.started for r in results], 50)), 2),
        "p99_s": round(float(np.percentile([r.ended - r.started for r in results], 99)), 2),
    }
    assert len(results) >= BUDGET.kiosks
    assert not unexpected, Counter((r.case, r.code) for r in unexpected)
    assert not mismatched, Counter((r.case, answer(r), BASELINE.answers[r.case]) for r in mismatched)
    # Every decision a kiosk got is on record, and nothing else was recorded meanwhile.
    after = audit_by_id(launched)
    assert {r.decision_id for r in results if r.decision_id} <= after.keys()
    assert len(after) - before == ACCOUNTING.expected - expected_before


# ---- 3. kill -9 under load ---------------------------------------------------------------------------


def wrong_accepts(
    launched: Launched, results: list[Result], baseline: Baseline = BASELINE
) -> list[tuple[str, str]]:
    """ACCEPTs that must not be: a case that is not an ACCEPT one at a time, or an ACCEPT whose
    audit record lacks a check the complete ACCEPT has (one that did not run)."""
    records = audit_by_id(launched)
    wrong = []
    for r in results:
        if r.outcome != "ACCEPT":
            continue
        if baseline.answers.get(r.case) != "ACCEPT":
            wrong.append(
                (r.case, "accepted although one at a time it is " + baseline.answers.get(r.case, "?"))
            )
            continue
        record = records.get(r.decision_id)
        if record is None:
            wrong.append((r.case, "no audit record"))
            continue
        reasons = frozenset(x["code"] for x in record["reasons"])
        if reasons != baseline.accept_reasons[r.case] or "SERVICE_UNAVAILABLE" in reasons:
            wrong.append((r.case, f"reasons {sorted(reasons)}"))
    return wrong


def kill(launched: Launched, target: str) -> None:
    if target == "redis":
        launched.redis.kill()
    else:
        os.kill(launched.pid(target), 9)


def recovered(launched: Launched, target: str, ch) -> bool:
    """Back to normal: the process SERVING again (Redis: the gateway's cache up again) and a
    same-person request ACCEPTed."""
    if target == "redis":
        if launched.redis.proc is not None and launched.redis.proc.poll() is not None:
            launched.redis.start()  # the suite's Redis is not supervised: restart it as an operator would
        if "facegate_gateway_replay_cache_up 1.0" not in launched.metrics("gateway"):
            return False
    elif not launched.all_serving():
        return False
    r = verify(launched, ch, "same_person", f"probe-{target}-{os.urandom(4).hex()}", timeout=120)
    return r.outcome == "ACCEPT"


@pytest.mark.timeout(1800)
def test_kill_9_under_load_fails_closed_and_recovers(launched: Launched, figures: Figures) -> None:
    records_before = len(audit_by_id(launched))
    expected_before, maybe_before = ACCOUNTING.expected, ACCOUNTING.maybe
    windows: dict[str, tuple[float, float]] = {}
    weights = {"same_person": 6}  # mostly travellers who would pass: what a fault must not let through
    with Kiosks(launched, BUDGET.kiosks, 3600, 100_000, weights) as kiosks:
        time.sleep(3)
        with gateway_channel(launched.target()) as probe:
            for target in BUDGET.faults:
                restarts = launched.status().get(target, {}).get("restarts", 0)
                killed_at = time.monotonic()
                kill(launched, target)
                figures.add("faults_injected")
                time.sleep(1.0)
                back = False
                while time.monotonic() - killed_at < RECOVERY_LIMIT_S:
                    launched.sample_rss()
                    if recovered(launched, target, probe):
                        back = True
                        break
                    time.sleep(0.5)
                recovery = time.monotonic() - killed_at
                windows[target] = (killed_at, time.monotonic())
                figures.recovery[target] = round(recovery, 1)
                if not back:
                    figures.add("wedged_processes")
                assert back, f"{target} did not recover within {RECOVERY_LIMIT_S:.0f}s"
                if target != "redis":
                    assert launched.status()[target]["restarts"] == restarts + 1, launched.status()[target]
                time.sleep(2)
    results = kiosks.results
    figures.add("fault_phase_requests", len(results))
    for r in results:
        figures.status("faults", answer(r))

    wrong = wrong_accepts(launched, results)
    figures.add("wrong_accepts", len(wrong))
    assert not wrong, wrong

    def allowed(r: Result) -> bool:
        if r.code == "OK" or r.code == "RESOURCE_EXHAUSTED" or r.code == BASELINE.answers[r.case]:
            return True
        # the gateway itself down: its clients see UNAVAILABLE (or a cut call) until it is back
        killed = windows.get("gateway")
        return killed is not None and r.code in UNSEEN and r.ended >= killed[0] and r.started <= killed[1]

    unexpected = [r for r in results if not allowed(r)]
    figures.add("unexpected_errors", len(unexpected))
    assert not unexpected, Counter((r.case, r.code) for r in unexpected)

    # Every answered decision is on record, the gateway's kill included; the records are those
    # of the calls made (plus at most one per call that never saw its answer).
    records = audit_by_id(launched)
    lost = {r.decision_id for r in results if r.decision_id} - records.keys()
    figures.add("lost_audit_records", len(lost))
    assert not lost
    added = len(records) - records_before
    assert (
        ACCOUNTING.expected - expected_before
        <= added
        <= (ACCOUNTING.expected - expected_before + ACCOUNTING.maybe - maybe_before)
    ), (added, ACCOUNTING.expected - expected_before, ACCOUNTING.maybe - maybe_before)

    assert launched.wait_serving(60), "a process is wedged after the faults"
    states = {label: e["state"] for label, e in launched.status().items()}
    assert set(states.values()) == {"serving"}, states


# ---- 4. generated fields on every gateway RPC --------------------------------------------------------

#: What a gateway call may answer with for any input (no fault is injected in this phase).
DEFINED = {
    "OK",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "OUT_OF_RANGE",
    "ABORTED",
}
ROLE_OF = {m: sorted(roles)[0] for m, roles in METHOD_ROLES.items()}
KEEP_LISTS = {"wanted"}  # the generated DeleteWatchlist calls must not empty the list the load uses


@cache
def small_images() -> tuple[bytes, ...]:
    rng = np.random.default_rng(5)
    out = []
    for fmt in ("JPEG", "PNG", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(buf, format=fmt)
        out.append(buf.getvalue())
    out.append((TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes())
    return tuple(out)


def draw_scalar(draw, f):
    T = f.type
    F = f
    if T == F.TYPE_STRING:
        return draw(
            st.one_of(
                st.text(max_size=80),
                st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<\n", max_size=100),
                st.sampled_from(
                    ["", "wanted", "*", "../../etc/passwd", "x" * 70000, "\u202e\u0000", "2012-01-01"]
                ),
            )
        )
    if T == F.TYPE_BYTES:
        return draw(
            st.one_of(
                st.binary(max_size=512),
                st.sampled_from(small_images()),
                st.builds(lambda b, n: b[:n], st.sampled_from(small_images()), st.integers(0, 400)),
            )
        )
    if T == F.TYPE_BOOL:
        return draw(st.booleans())
    if T in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return draw(
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, -1.0, 1e-3])
            )
        )
    if T == F.TYPE_ENUM:
        return draw(st.integers(-3, 12))
    unsigned = T in (F.TYPE_UINT32, F.TYPE_FIXED32, F.TYPE_UINT64, F.TYPE_FIXED64)
    bits = 64 if T in (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64) else 32
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return draw(st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1, 100, 101, 501])))


def fill(draw, msg, depth: int = 0) -> None:
    """Set a random subset of ``msg``'s fields (oneofs: at most one member, sometimes none)."""
    for f in msg.DESCRIPTOR.fields:
        if draw(st.integers(0, 2)) == 0:
            continue
        if f.containing_oneof is not None and msg.WhichOneof(f.containing_oneof.name) is not None:
            continue
        repeated = f.is_repeated
        n = draw(st.integers(0, 3)) if repeated else 1
        for _ in range(n):
            if f.type == f.TYPE_MESSAGE:
                if depth >= 3 or f.message_type.full_name.startswith("google.protobuf"):
                    continue
                sub = getattr(msg, f.name).add() if repeated else getattr(msg, f.name)
                if not repeated:
                    sub.SetInParent()
                fill(draw, sub, depth + 1)
            else:
                value = draw_scalar(draw, f)
                if repeated:
                    getattr(msg, f.name).append(value)
                else:
                    setattr(msg, f.name, value)


@st.composite
def gateway_requests(draw):
    method = draw(st.sampled_from(sorted(METHODS)))
    msg = METHODS[method][0]()
    fill(draw, msg)
    if method == "DeleteWatchlist" and msg.name in KEEP_LISTS:
        msg.name = "not-" + msg.name
    return method, msg


def test_generated_fields_on_every_gateway_rpc(launched: Launched, figures: Figures) -> None:
    ids_before = set(audit_by_id(launched))
    per_method_before = Counter(ACCOUNTING.per_method)
    bad: list[tuple[str, str]] = []
    sent: dict[str, tuple[str, str, str]] = {}
    with gateway_channel(launched.target()) as ch:

        @settings(
            max_examples=BUDGET.gateway_inputs,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(gateway_requests())
        def send(item) -> None:
            method, msg = item
            started = time.monotonic()
            rid = os.urandom(8).hex()
            code, _ = gw_call(launched, ch, method, msg, ROLE_OF[method], timeout=60, rid=rid)
            sent[rid] = (method, code, getattr(LAST_DETAILS, "value", "") if code != "OK" else "")
            figures.add("inputs_tried")
            figures.add("inputs_tried.gateway")
            figures.status(f"gateway.{method}", code)
            if code == "DEADLINE_EXCEEDED" or time.monotonic() - started > 60:
                figures.add("hangs")
            if code not in DEFINED:
                figures.add("crashes")
                bad.append((method, code))

        send()
    assert not bad, Counter(bad)
    assert launched.all_serving()
    new = [r for i, r in audit_by_id(launched).items() if i not in ids_before]
    added = Counter(r["operation"] for r in new)
    surprises = [
        (r["operation"], r["outcome"], sent.get(r["request_id"]))
        for r in new
        if r["request_id"] not in sent or not audited(*sent[r["request_id"]])
    ]
    assert added == ACCOUNTING.per_method - per_method_before, (surprises, added)


# ---- 5. the biggest inputs: bounded memory, defined answers ------------------------------------------


def crowd(n_faces: int) -> bytes:
    """One image with ``n_faces`` dev faces tiled in a grid (each ~120 px: findable by MTCNN)."""
    people = sorted(p for p in (FACES / "images").iterdir() if p.is_dir())[:n_faces]
    cols = int(np.ceil(np.sqrt(n_faces)))
    rows = int(np.ceil(n_faces / cols))
    canvas = Image.new("RGB", (cols * 130, rows * 130), (128, 128, 128))
    for i, person in enumerate(people):
        face = Image.open(next(person.iterdir())).convert("RGB").crop((50, 50, 200, 200)).resize((120, 120))
        canvas.paste(face, ((i % cols) * 130 + 5, (i // cols) * 130 + 5))
    return jpeg(np.asarray(canvas))


def test_biggest_inputs_get_defined_answers_in_bounded_memory(launched: Launched, figures: Figures) -> None:
    from tests.reliability.test_parsers_fuzz import png_claiming

    n_faces = 300 if FULL else 40
    inputs = {
        "message just under the 32 MiB limit": os.urandom(32 * 1024 * 1024 - 256 * 1024),
        "message over the 32 MiB limit": os.urandom(40 * 1024 * 1024),
        "decompression bomb (32768 x 32768 PNG)": png_claiming(32768, 32768),
        f"{n_faces} faces in one image": crowd(n_faces),
    }
    answers = {}
    with gateway_channel(launched.target()) as ch:
        for what, data in inputs.items():
            image = common_pb2.Image(data=data)
            for method, msg, role in (
                ("Detect", METHODS["Detect"][0](image=image), "officer"),
                (
                    "VerifyTraveller",
                    gateway_pb2.VerifyTravellerRequest(
                        gate_id="gate-big",
                        document=docverify_pb2.VerifyRequest(
                            live=image, portrait_image=common_pb2.Image(data=OTHER_PERSON.read_bytes())
                        ),
                    ),
                    "kiosk",
                ),
            ):
                started = time.monotonic()
                code, response = gw_call(launched, ch, method, msg, role, timeout=300)
                elapsed = time.monotonic() - started
                launched.sample_rss()
                detail = code
                if code == "OK" and method == "Detect":
                    detail = f"OK, {len(response.faces)} faces"
                elif code == "OK":
                    detail = outcome_name(response.decision.outcome)
                answers[f"{method}: {what}"] = f"{detail} in {elapsed:.1f}s"
                figures.add("inputs_tried")
                figures.status("big_inputs", code)
                assert code in DEFINED, (what, method, code)
                if "limit" in what or "bomb" in what:
                    assert code in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"), (what, method, code)
                if "faces" in what and method == "VerifyTraveller":
                    assert detail != "ACCEPT", answers
    figures.notes["big_inputs"] = answers
    figures.notes["peak_rss_mib"] = {k: v >> 20 for k, v in sorted(launched.peak_rss.items())}
    assert launched.all_serving()
    for label, rss in launched.peak_rss.items():
        limit = 1 << 30 if label == "gateway" else 6 << 30
        assert rss < limit, f"{label} grew to {rss >> 20} MiB"


# ---- 6. what the logs, metrics and audit trail must never hold ---------------------------------------


def test_no_images_names_mrz_or_keys_in_logs_metrics_or_audit(launched: Launched, figures: Figures) -> None:
    from tests.docverify.specimens import valid_specimens

    names = dev_names()
    secrets = {k for k in launched.keys.values() if k}
    secrets |= set(DISPLAY_NAMES)
    secrets |= {line for s in valid_specimens() for line in s["mrz"]}
    launched.drain_output()
    # make run prints its dev keys once at start, by design (README); every other line is scanned.
    sources = {
        f"launcher output line {i + 1}": line
        for i, line in enumerate(launched.output)
        if not re.match(r"^\s+FACEGATE_[A-Z]+_KEY=", line)
    }
    lines = 0
    for log in sorted((launched.var / "logs").glob("*.log")):
        for i, line in enumerate(log.read_text(errors="replace").splitlines()):
            sources[f"{log.name}:{i + 1}"] = line
    for label in SERVICE_NAMES:
        for i, line in enumerate(launched.metrics(label).splitlines()):
            sources[f"{label} metrics line {i + 1}"] = line
    for i, line in enumerate(launched.audit_log.read_text().splitlines()):
        sources[f"audit.log:{i + 1}"] = line
    findings = []
    for where, text in sources.items():
        lines += 1
        findings += scan_text(text, names, secrets, where)
    figures.add("log_lines_scanned", lines)
    figures.add("log_findings", len(findings))
    assert lines > 100
    (launched.var / "log-findings.txt").write_text("\n".join(findings))
    kinds = Counter(
        f.split(": ", 1)[1].split(" ", 1)[0] + " in " + f.split(":", 1)[0].split(" ")[0] for f in findings
    )
    assert not findings, (kinds, findings[:10])


# ---- 7. the audit trail after everything --------------------------------------------------------------


def test_audit_log_verifies_and_holds_every_answered_call(launched: Launched, figures: Figures) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facegate", "audit", "verify", str(launched.audit_log)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.startswith("OK: "), done.stdout + done.stderr
    records = audit_by_id(launched)
    by_kind = Counter(
        "refused"
        if r["outcome"] == "REFUSED"
        else "decision"
        if r["operation"] in DECISION_METHODS
        else "admin"
        for r in records.values()
    )
    figures.notes["audit_records"] = dict(
        by_kind,
        total=len(records),
        expected_from_the_calls_made=ACCOUNTING.expected,
        calls_whose_answer_was_not_seen=ACCOUNTING.maybe,
    )
    missing = ACCOUNTING.decision_ids - records.keys()
    figures.add("lost_audit_records", len(missing))
    assert not missing
    assert ACCOUNTING.expected <= len(records) <= ACCOUNTING.expected + ACCOUNTING.maybe, (
        len(records),
        ACCOUNTING.expected,
        ACCOUNTING.maybe,
    )
    figures.add("audit_records", len(records))
