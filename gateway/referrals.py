"""Referrals as an officer works them: held images, the outcome, and the two-officer rule for hits.

Why here and not in a console: the gateway is the one place that decides and audits, so every
client (the web console, the CLI, a third-party workstation) gets the same rules.

* **Held images.** A REFER's live capture and document portrait are kept in this process's memory
  only (:class:`HeldImages`), for at most ``FACEGATE_GATEWAY_REFERRAL_HOLD_S`` and for at most
  ``FACEGATE_GATEWAY_REFERRAL_HOLD_MAX`` referrals, and dropped as soon as the officer records the
  outcome. There is no image store: a restarted gateway holds none, and an officer then works from
  the decision's reasons and scores alone. (With several gateway replicas, the record and the images
  are on the replica that decided; ``gateway.peers`` lists every replica's referrals and forwards an
  officer's call to that replica, whichever one the officer is connected to.)
* **State from the audit trail.** A referral's outcome and its hit confirmations are audit records
  that name the referral in ``refers_to``; :class:`ReferralDesk` reads them back from the recent
  records, so the state survives a restart and there is no second copy that could disagree.
* **Two officers** (EU AI Act art. 14(5)): a watchlist hit is confirmed only when a second, different
  officer (another key id) confirms it. The same officer twice, a referral without a hit or one
  already confirmed is FAILED_PRECONDITION, and the refused attempt is audited as well.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from facegate.errors import FacegateError, FailedPrecondition, InvalidArgument, NotFound
from facegate.v1 import common_pb2, docverify_pb2, gateway_pb2, watchlist_pb2
from gateway.audit import AuditStore, Record
from gateway.downstream import Downstream
from gateway.records import action_body, check_ids, to_audit_record
from services.runtime.images import decode_image, encode_png, sniff_format

RO = gateway_pb2.ReferralOutcome
HS = gateway_pb2.HitStatus

#: The audit outcome of each officer outcome. "REFUSED" alone already means a call refused before
#: any handler ran, so a refused traveller is ENTRY_REFUSED.
OUTCOME_RECORDS: Mapping[int, str] = {
    RO.REFERRAL_OUTCOME_ADMITTED: "ADMITTED",
    RO.REFERRAL_OUTCOME_REFUSED: "ENTRY_REFUSED",
    RO.REFERRAL_OUTCOME_ESCALATED: "ESCALATED",
}
OUTCOME_OF_RECORD = {name: value for value, name in OUTCOME_RECORDS.items()}
FIRST_CONFIRMATION, SECOND_CONFIRMATION = "AWAITING_SECOND_OFFICER", "CONFIRMED"
#: Formats a browser shows as they are; anything else (JPEG 2000 from a chip) is re-encoded as PNG.
BROWSER_FORMATS = ("JPEG", "PNG", "WEBP")


@dataclass
class _Held:
    document: docverify_pb2.VerifyRequest  # the live capture and the portrait source, no MRZ
    expires: float


class HeldImages:
    """The images of open referrals, in memory, bounded in time and number; thread-safe."""

    def __init__(self, hold_s: float, max_held: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s, self.max_held, self.clock = hold_s, max_held, clock
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, decision_id: str, document: docverify_pb2.VerifyRequest) -> None:
        """Keep the live capture and portrait of one REFER (never the MRZ)."""
        if self.max_held <= 0:
            return
        kept = docverify_pb2.VerifyRequest()
        kept.CopyFrom(document)
        kept.ClearField("mrz")
        with self._lock:
            self._expire()
            self._held[decision_id] = _Held(kept, self.clock() + self.hold_s)
            while len(self._held) > self.max_held:
                self._held.popitem(last=False)

    def get(self, decision_id: str) -> docverify_pb2.VerifyRequest | None:
        with self._lock:
            self._expire()
            held = self._held.get(decision_id)
            return held.document if held else None

    def drop(self, decision_id: str) -> None:
        with self._lock:
            self._held.pop(decision_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._held)

    def _expire(self) -> None:
        now = self.clock()
        while self._held and next(iter(self._held.values())).expires <= now:
            self._held.popitem(last=False)


@dataclass
class ReferralState:
    """What officers have done about one referral, read back from the audit trail."""

    outcome: int = RO.REFERRAL_OUTCOME_UNSPECIFIED
    outcome_by: str = ""
    confirmed_by: list[str] = field(default_factory=list)

    def hit_status(self, has_hit: bool) -> int:
        if not has_hit:
            return HS.HIT_STATUS_UNSPECIFIED
        if len(self.confirmed_by) >= 2:
            return HS.HIT_STATUS_CONFIRMED
        return HS.HIT_STATUS_AWAITING_SECOND if self.confirmed_by else HS.HIT_STATUS_UNCONFIRMED


def has_hit(record: Mapping[str, Any]) -> bool:
    return any(r.get("code") == "WATCHLIST_HIT" for r in record.get("reasons", []))


def displayable(image: common_pb2.Image) -> common_pb2.Image:
    """The image as a browser can show it: JPEG, PNG and WebP as they are, anything else as PNG."""
    if not image.data or sniff_format(image.data) in BROWSER_FORMATS:
        return image
    try:
        rgb = decode_image(image.data, max_bytes=len(image.data), max_pixels=40_000_000)
    except FacegateError:
        return common_pb2.Image()  # nothing an officer could see; the decision's reasons still say why
    return common_pb2.Image(data=encode_png(rgb), format_hint=common_pb2.IMAGE_FORMAT_PNG)


class ReferralDesk:
    """GetReferral, RecordReferralOutcome, ConfirmWatchlistHit and ListReferrals' open filter."""

    def __init__(
        self,
        audit: AuditStore,
        held: HeldImages,
        append: Callable[[Mapping[str, Any]], None],
        window: int,
    ) -> None:
        """``append`` writes an audit body or fails the call (the gateway's ``_append``); ``window``
        is how many recent audit records are read back for the state."""
        self.audit, self.held, self.append, self.window = audit, held, append, window
        self._lock = threading.Lock()  # one officer action at a time: check and record together

    # ---- reading -------------------------------------------------------------------------------

    def referral_record(self, decision_id: str) -> Record:
        """The audited REFER of a gate, or NOT_FOUND."""
        if not decision_id:
            raise InvalidArgument("decision_id is required")
        check_ids("decision_id", [decision_id])
        record = self.audit.get(decision_id)
        if record is None or record.get("operation") != "VerifyTraveller" or record.get("outcome") != "REFER":
            raise NotFound(f"no referral with decision id {decision_id}")
        return record

    def states(self) -> dict[str, ReferralState]:
        """Officer actions of the recent window, by the referral they act on (oldest first)."""
        out: dict[str, ReferralState] = {}
        for record in reversed(self.audit.recent(limit=self.window)):
            target = record.get("refers_to")
            if not target:
                continue
            state = out.setdefault(target, ReferralState())
            operation, outcome = record.get("operation"), record.get("outcome")
            if operation == "RecordReferralOutcome" and outcome in OUTCOME_OF_RECORD:
                state.outcome, state.outcome_by = OUTCOME_OF_RECORD[outcome], record.get("caller", "")
            elif operation == "ConfirmWatchlistHit" and outcome in (FIRST_CONFIRMATION, SECOND_CONFIRMATION):
                state.confirmed_by.append(record.get("caller", ""))
        return out

    def is_open(self, decision_id: str, states: Mapping[str, ReferralState]) -> bool:
        state = states.get(decision_id)
        return state is None or state.outcome == RO.REFERRAL_OUTCOME_UNSPECIFIED

    def referral(self, decision_id: str, down: Downstream | None = None) -> gateway_pb2.Referral:
        """The referral with its state, and its images while they are held (``down`` crops the
        portrait out of a DG2 or page scan; without it only the live capture is returned)."""
        record = self.referral_record(decision_id)
        state = self.states().get(decision_id, ReferralState())
        out = gateway_pb2.Referral(
            record=to_audit_record(record),
            outcome=state.outcome,
            outcome_by=state.outcome_by,
            hit_status=state.hit_status(has_hit(record)),
            hit_confirmed_by=state.confirmed_by,
        )
        if down is not None:
            out.candidates.extend(_with_info(down, out.record.candidates))
        document = self.held.get(decision_id) if state.outcome == RO.REFERRAL_OUTCOME_UNSPECIFIED else None
        if document is not None:
            out.images_held = True
            out.live.CopyFrom(displayable(document.live))
            out.portrait.CopyFrom(displayable(_portrait(document, down)))
        return out

    # ---- officer actions -----------------------------------------------------------------------

    def record_outcome(self, decision_id: str, outcome: int) -> gateway_pb2.Referral:
        if outcome not in OUTCOME_RECORDS:
            raise InvalidArgument("outcome: one of ADMITTED, REFUSED or ESCALATED is required")
        record = self.referral_record(decision_id)
        with self._lock:
            self._audited("RecordReferralOutcome", decision_id, lambda: self._check_open(decision_id))
            self.append(self._body("RecordReferralOutcome", OUTCOME_RECORDS[outcome], record))
            self.held.drop(decision_id)
        return self.referral(decision_id)

    def confirm_hit(self, decision_id: str, officer: str) -> gateway_pb2.Referral:
        record = self.referral_record(decision_id)
        with self._lock:
            first = self._audited(
                "ConfirmWatchlistHit", decision_id, lambda: self._check_confirmable(record, officer)
            )
            outcome = FIRST_CONFIRMATION if first else SECOND_CONFIRMATION
            self.append(self._body("ConfirmWatchlistHit", outcome, record))
        return self.referral(decision_id)

    def _audited(self, operation: str, decision_id: str, check: Callable[[], Any]) -> Any:
        """``check()`` on an existing referral, a refusal audited under ``operation`` before it is
        raised (an id that names no referral is the caller's input error, like any NOT_FOUND)."""
        try:
            return check()
        except FacegateError as exc:
            body = action_body(operation, exc.code.name, reasons=[(exc.code.name, exc.message[:500])])
            body["refers_to"] = decision_id
            self.append(body)
            raise

    def _check_open(self, decision_id: str) -> None:
        state = self.states().get(decision_id)
        if state is not None and state.outcome != RO.REFERRAL_OUTCOME_UNSPECIFIED:
            name = OUTCOME_RECORDS[state.outcome]
            raise FailedPrecondition(f"the referral is already closed: {name} by {state.outcome_by}")

    def _check_confirmable(self, record: Record, officer: str) -> bool:
        """True for the first confirmation, False for the second; FAILED_PRECONDITION otherwise."""
        if not has_hit(record):
            raise FailedPrecondition("the referral has no watchlist hit to confirm")
        confirmed = self.states().get(record["decision_id"], ReferralState()).confirmed_by
        if len(confirmed) >= 2:
            raise FailedPrecondition(f"the hit is already confirmed by {confirmed[0]} and {confirmed[1]}")
        if officer in confirmed:
            raise FailedPrecondition(
                f"officer {officer} already confirmed this hit; a second, different officer must confirm it"
            )
        return not confirmed

    @staticmethod
    def _body(operation: str, outcome: str, record: Mapping[str, Any]) -> dict[str, Any]:
        body = action_body(operation, outcome)
        body["refers_to"] = record["decision_id"]
        if record.get("gate_id"):
            body["gate_id"] = record["gate_id"]
        return body


def _with_info(
    down: Downstream, candidates: Iterable[watchlist_pb2.Candidate]
) -> list[watchlist_pb2.Candidate]:
    """The candidates with their subjects' info as the watchlist holds it now (the audit keeps ids only)."""
    out = []
    for candidate in candidates:
        found = watchlist_pb2.Candidate()
        found.CopyFrom(candidate)
        request = watchlist_pb2.GetSubjectRequest(
            watchlist=candidate.watchlist, subject_id=candidate.subject_id
        )
        # Removed since (erasure), or the watchlist service is down: the ids still show.
        with contextlib.suppress(FacegateError):
            found.info.CopyFrom(down.call("watchlist", down.watchlist.GetSubject, request).info)
        out.append(found)
    return out


def _portrait(document: docverify_pb2.VerifyRequest, down: Downstream | None) -> common_pb2.Image:
    """The portrait as an image: given as one, or cropped by docverify from a DG2 or page scan."""
    source = document.WhichOneof("portrait")
    if source == "portrait_image":
        return document.portrait_image
    if down is None or source is None:
        return common_pb2.Image()
    request = (
        docverify_pb2.ExtractPortraitRequest(dg2=document.dg2)
        if source == "dg2"
        else docverify_pb2.ExtractPortraitRequest(page_scan=document.page_scan)
    )
    try:
        return down.call("docverify", down.docverify.ExtractPortrait, request).portrait
    except FacegateError:
        return common_pb2.Image()  # the officer still sees the live capture and the decision
