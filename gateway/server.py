"""gRPC servicer for the gateway: what every client calls.

One place for what all RPCs share: the role check (``gateway.auth.RoleInterceptor``, before any
handler runs), bounded concurrency with back-pressure, a deadline for callers that set none, and
the audit trail (no decision and no admin action is answered without its record). What each RPC
does lives beside it: the gate decision in ``gateway.kiosk`` and ``gateway.decision``, the
officer's tools in ``gateway.officer``, enrolment in ``gateway.admin``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from facegate.audit import utc_now_iso
from facegate.context import call_context, current_request_id
from facegate.errors import FacegateError, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from facegate.v1 import common_pb2, detection_pb2, gateway_pb2, gateway_pb2_grpc, watchlist_pb2
from gateway import admin, kiosk, metrics, officer, status
from gateway.audit import AuditError, AuditStore, FileAuditStore
from gateway.auth import RoleInterceptor, current_caller
from gateway.config import GatewaySettings
from gateway.decision import kiosk_view
from gateway.downstream import Downstream, Timings
from gateway.keys import KeyFileError, KeyRing
from gateway.peers import Peers, forwarded_metadata, is_forwarded
from gateway.records import (
    action_body,
    check_ids,
    decision_body,
    new_decision_id,
    outcome_name,
    reason_name,
    stamp,
    to_audit_record,
)
from gateway.referrals import HeldImages, ReferralDesk
from gateway.replay import ReplayCache
from gateway.stream import CaptureSession
from gateway.tls import check_transport, server_credentials
from services.runtime import mtls
from services.runtime.config import ConfigError, RuntimeSettings
from services.runtime.redis_client import tls_options
from services.runtime.server import run_service

log = logging.getLogger("facegate.gateway")
T = TypeVar("T")
R = common_pb2.ReasonCode

MAX_REFERRALS = 500
#: Recent REFER records ListReferrals looks through (the audit store keeps the last 1000 in memory).
REFERRAL_WINDOW = 1000


def _open_keys(path: Path) -> KeyRing:
    try:
        return KeyRing(path)
    except KeyFileError as exc:
        raise ConfigError(f"invalid configuration:\n  FACEGATE_GATEWAY_KEY_FILE: {exc}") from None


def _open_audit(path: Path) -> FileAuditStore:
    try:
        return FileAuditStore(path)
    except AuditError as exc:
        raise ConfigError(f"invalid configuration:\n  FACEGATE_GATEWAY_AUDIT_LOG: {exc}") from None


def _open_peers(settings: GatewaySettings, runtime: RuntimeSettings) -> Peers | None:
    if not settings.peers:
        return None
    return Peers(
        settings.peers,
        own_port=settings.peer_port,
        timeout_s=settings.peer_timeout_s,
        credentials=mtls.channel_credentials(runtime),
        server_name=settings.peer_server_name,
    )


def newest_first(records: list[gateway_pb2.AuditRecord]) -> list[gateway_pb2.AuditRecord]:
    """Referrals of several replicas as one list: newest decision first, each decision once."""
    seen: dict[str, gateway_pb2.AuditRecord] = {}
    for record in records:
        seen.setdefault(record.decision.decision_id, record)

    def decided_at(record: gateway_pb2.AuditRecord) -> tuple[int, int]:
        return record.decision.decided_at.seconds, record.decision.decided_at.nanos

    return sorted(seen.values(), key=decided_at, reverse=True)


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):
    service_names = ("facegate.v1.GatewayService",)

    def __init__(
        self, settings: GatewaySettings, runtime: RuntimeSettings, *, audit: AuditStore | None = None
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        check_transport(settings, runtime)
        self.server_credentials = server_credentials(settings)
        self.keys = _open_keys(settings.key_file)
        self.audit = audit if audit is not None else _open_audit(settings.audit_log)
        self.interceptors = (RoleInterceptor(self.keys, on_refusal=self._audit_refusal),)
        self.replay = ReplayCache(
            settings.redis_url,
            ttl_s=settings.replay_ttl_s,
            timeout_ms=settings.replay_timeout_ms,
            tls=tls_options(settings.redis_url, runtime, "FACEGATE_GATEWAY_REDIS_URL"),
        )
        self.down: Downstream | None = None
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gateway-stage")
        self.held = HeldImages(settings.referral_hold_s, settings.referral_hold_max)
        self.desk = ReferralDesk(self.audit, self.held, self._append, window=REFERRAL_WINDOW)
        self.started_at = Timestamp()
        self.started_at.GetCurrentTime()
        self.internal_ports = (settings.peer_port,) if settings.peer_port > 0 else ()
        self.peers = _open_peers(settings, runtime)

    def register(self, server: grpc.Server) -> None:
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        """Open the channels. Services may still be starting: until they answer, decisions REFER."""
        if self.down is None:
            self.down = Downstream(self.settings, mtls.channel_credentials(self.runtime))

    def close(self) -> None:
        if self.down is not None:
            self.down.close()
            self.down = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.peers is not None:
            self.peers.close()
        self.replay.close()
        self.audit.close()

    # ---- what every RPC shares ---------------------------------------------------------------

    @contextmanager
    def _work(self) -> Iterator[Downstream]:
        """A slot of the bounded concurrency (RESOURCE_EXHAUSTED when none is free, never a queue)
        and the default deadline for callers that set none."""
        if not self._slots.acquire(blocking=False):
            metrics.SATURATED.inc()
            raise ResourceExhausted("the gateway is at capacity; retry shortly")
        metrics.IN_FLIGHT.inc()
        try:
            with call_context(timeout_s=self.settings.request_timeout_s):
                assert self.down is not None
                yield self.down
        finally:
            metrics.IN_FLIGHT.dec()
            self._slots.release()

    def _append(self, body: Mapping[str, Any]) -> None:
        """Write the audit record or fail the call: nothing is answered without its record.

        Its wall time (the write and the fsync) is the stage ``audit`` of the stage metric: on a
        kiosk decision it is the one disk wait between the answer and the caller."""
        started = time.perf_counter()
        try:
            self.audit.append(body)
        except AuditError as exc:
            log.error("audit write failed", exc_info=exc)
            raise Unavailable("the audit trail is unavailable; nothing was decided or changed") from None
        finally:
            metrics.STAGE_SECONDS.labels("audit").observe(time.perf_counter() - started)

    def _record_decision(self, operation: str, decision: common_pb2.Decision, **fields: Any) -> None:
        self._append(decision_body(operation, decision, **fields))
        metrics.DECISIONS.labels(operation, outcome_name(decision.outcome)).inc()
        for reason in decision.reasons:
            metrics.DECISION_REASONS.labels(operation, reason_name(reason.code)).inc()
        hits = sum(1 for r in decision.reasons if r.code == R.REASON_CODE_WATCHLIST_HIT)
        if hits:
            metrics.WATCHLIST_HITS.labels(operation).inc(hits)

    def _audit_refusal(self, method: str, reason: str, key_id: str | None, role: str | None) -> None:
        self._append(
            {
                "decision_id": new_decision_id(),
                "time": utc_now_iso(),
                "request_id": current_request_id(),
                "caller": key_id or "",
                "role": role or "",
                "operation": method.rsplit("/", 1)[-1],
                "outcome": "REFUSED",
                "reasons": [{"code": reason.upper(), "message": "call refused before any handler ran"}],
            }
        )

    def _admin(
        self,
        operation: str,
        action: Callable[[], T],
        *,
        watchlist: str = "",
        subject_id: Callable[[T], str] | str = "",
    ) -> T:
        """Run an admin action and audit it, whether it succeeded (OK) or not (its status code)."""
        try:
            result = action()
        except FacegateError as exc:
            sid = subject_id if isinstance(subject_id, str) else ""
            reasons = [(exc.code.name, exc.message[:500])]
            self._append(
                action_body(operation, exc.code.name, watchlist=watchlist, subject_id=sid, reasons=reasons)
            )
            raise
        sid = subject_id if isinstance(subject_id, str) else subject_id(result)
        self._append(action_body(operation, "OK", watchlist=watchlist, subject_id=sid))
        return result

    # ---- kiosk ---------------------------------------------------------------------------------

    def VerifyTraveller(
        self, request: gateway_pb2.VerifyTravellerRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.VerifyTravellerResponse:
        with self._work() as down:
            scope, rid, payload = self._replay_begin("VerifyTraveller")
            if payload is not None:  # a retry of an answered request: the same decision
                return gateway_pb2.VerifyTravellerResponse.FromString(payload)
            try:
                response = self._decide_gate(down, request)
            except BaseException:
                self.replay.release(scope, rid)
                raise
            self.replay.put(scope, rid, response.SerializeToString())
            return response

    def VerifyTravellerStream(
        self, requests: Iterator[gateway_pb2.VerifyTravellerStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[gateway_pb2.VerifyTravellerStreamResponse]:
        """VerifyTraveller from the camera's stream (gateway.stream): feedback, then the same decision."""
        with self._work() as down:
            scope, rid, payload = self._replay_begin("VerifyTravellerStream")
            if payload is not None:
                yield gateway_pb2.VerifyTravellerStreamResponse.FromString(payload)
                return
            try:
                with CaptureSession(requests, context, down, self.settings) as session:
                    yield from session.capture()
                    response = self._decide_gate(
                        session.down, session.request(), session.timings, before_record=session.check_client
                    )
                    answer = session.decision(response)
            except BaseException:
                self.replay.release(scope, rid)
                raise
            self.replay.put(scope, rid, answer.SerializeToString())
            yield answer

    def _replay_begin(self, operation: str) -> tuple[str, str, bytes | None]:
        """The retry cache's scope and request id for this call, and the stored answer of a retry."""
        caller = current_caller()
        scope, rid = f"{caller.key_id if caller else ''}:{operation}", current_request_id()
        start = self.replay.begin(scope, rid)
        if start.payload is None and start.in_progress:
            raise FacegateError(
                "a request with this id is still being decided; retry shortly", grpc.StatusCode.ABORTED
            )
        return scope, rid, start.payload

    def _decide_gate(
        self,
        down: Downstream,
        request: gateway_pb2.VerifyTravellerRequest,
        timings: Timings | None = None,
        *,
        before_record: Callable[[], None] | None = None,
    ) -> gateway_pb2.VerifyTravellerResponse:
        """Check, decide, audit: the one gate decision path. ``timings`` may hold earlier stages (a
        stream's capture); ``before_record`` may refuse the recording (a stream whose kiosk left)."""
        checks = kiosk.run_checks(down, request, timings, screen_far=self.settings.screen_far)
        decision = stamp(checks.decision.to_proto(), checks.timings.ms)
        decision.instruction = checks.decision.instruction
        if before_record is not None:
            before_record()
        self._record_decision(
            "VerifyTraveller",
            decision,
            gate_id=request.gate_id,
            watchlists=list(request.watchlists) or ["*"],
            candidates=checks.candidates,
        )
        if decision.outcome == common_pb2.OUTCOME_REFER:
            self.held.hold(decision.decision_id, request.document)  # for the officer, until closed
        view = kiosk_view(checks.decision).to_proto()  # outcome, instruction, what a kiosk may see
        view.decision_id, view.request_id, view.instruction = (
            decision.decision_id,
            decision.request_id,
            decision.instruction,
        )
        view.decided_at.CopyFrom(decision.decided_at)
        view.timings.extend(decision.timings)
        return gateway_pb2.VerifyTravellerResponse(
            decision=view, verification=kiosk.kiosk_verification(checks.verification)
        )

    # ---- officer -------------------------------------------------------------------------------

    def Identify(
        self, request: gateway_pb2.IdentifyRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.IdentifyResponse:
        with self._work() as down:
            answer, response = officer.identify(down, request)
            decision = stamp(answer.decision, answer.timings.ms)
            watchlists = list(request.watchlists) or ["*"]
            self._record_decision("Identify", decision, watchlists=watchlists, candidates=answer.candidates)
            response.decision.CopyFrom(decision)
            return response

    def Compare(
        self, request: gateway_pb2.CompareRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.CompareResponse:
        with self._work() as down:
            answer, response = officer.compare(down, request, self.settings.calibration_dir, self._pool)
            decision = stamp(answer.decision, answer.timings.ms)
            self._record_decision("Compare", decision)
            response.decision.CopyFrom(decision)
            return response

    def Detect(
        self, request: detection_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> detection_pb2.DetectResponse:
        with self._work() as down:
            return down.call("detection", down.pipeline.detection.Detect, request)

    def GetAuditRecord(
        self, request: gateway_pb2.GetAuditRecordRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.AuditRecord:
        if not request.decision_id:
            raise InvalidArgument("decision_id is required")
        if self._held_by_a_peer(request.decision_id, context):
            return self._forward("GetAuditRecord", request, context)
        record = self.audit.get(request.decision_id)
        if record is None:
            raise NotFound(f"no audit record with decision id {request.decision_id[:64]}")
        return to_audit_record(record)

    def ListReferrals(
        self, request: gateway_pb2.ListReferralsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.ListReferralsResponse:
        limit = request.limit or 50
        if limit > MAX_REFERRALS:
            raise InvalidArgument(f"limit {limit} is over {MAX_REFERRALS}")
        states = self.desk.states() if request.open_only else {}
        records = [
            to_audit_record(r)
            for r in self.audit.recent(outcome="REFER", limit=REFERRAL_WINDOW)
            if r.get("operation") == "VerifyTraveller"
            and (not request.gate_id or r.get("gate_id") == request.gate_id)
            and (not request.open_only or self.desk.is_open(r["decision_id"], states))
        ][:limit]
        unreachable: list[str] = []
        if self.peers is not None and not is_forwarded(context):
            theirs, unreachable = self.peers.list_referrals(request, forwarded_metadata(context))
            records = newest_first([*records, *theirs])[:limit]
        return gateway_pb2.ListReferralsResponse(referrals=records, unreachable_peers=unreachable)

    def GetReferral(
        self, request: gateway_pb2.GetReferralRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.Referral:
        if self._held_by_a_peer(request.decision_id, context):
            return self._forward("GetReferral", request, context)
        with self._work() as down:
            return self.desk.referral(request.decision_id, down)

    def RecordReferralOutcome(
        self, request: gateway_pb2.RecordReferralOutcomeRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.Referral:
        if self._held_by_a_peer(request.decision_id, context):
            return self._forward("RecordReferralOutcome", request, context)
        return self.desk.record_outcome(request.decision_id, request.outcome)

    def ConfirmWatchlistHit(
        self, request: gateway_pb2.ConfirmWatchlistHitRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.Referral:
        if self._held_by_a_peer(request.decision_id, context):
            return self._forward("ConfirmWatchlistHit", request, context)
        caller = current_caller()
        assert caller is not None  # the role interceptor admitted an officer
        return self.desk.confirm_hit(request.decision_id, caller.key_id)

    def _held_by_a_peer(self, decision_id: str, context: grpc.ServicerContext) -> bool:
        """True when another replica must answer for ``decision_id``: peers are configured, the
        call is not already forwarded, the id is well formed and this replica has no record of it."""
        if self.peers is None or not decision_id or is_forwarded(context):
            return False
        check_ids("decision_id", [decision_id])
        return self.audit.get(decision_id) is None

    def _forward(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        assert self.peers is not None
        with call_context(timeout_s=self.settings.request_timeout_s):
            return self.peers.forward(method, request, forwarded_metadata(context))

    # ---- any role, ops -------------------------------------------------------------------------

    def WhoAmI(
        self, request: gateway_pb2.WhoAmIRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.WhoAmIResponse:
        caller = current_caller()
        assert caller is not None
        return gateway_pb2.WhoAmIResponse(key_id=caller.key_id, role=caller.role)

    def GetSystemStatus(
        self, request: gateway_pb2.GetSystemStatusRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SystemStatus:
        with self._work() as down:
            own = f"{self.runtime.host}:{self.settings.port}" if self.settings.port else "(this process)"
            return status.system_status(self.settings, down, self._pool, self.started_at, own)

    # ---- admin ---------------------------------------------------------------------------------

    def CheckEnrolmentPhotos(
        self, request: gateway_pb2.CheckEnrolmentPhotosRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.CheckEnrolmentPhotosResponse:
        with self._work() as down:
            return self._admin("CheckEnrolmentPhotos", lambda: admin.check_photos(down, request, self._pool))

    def EnrollFromPhotos(
        self, request: gateway_pb2.EnrollFromPhotosRequest, context: grpc.ServicerContext
    ) -> watchlist_pb2.EnrollSubjectResponse:
        with self._work() as down:

            def enrol() -> watchlist_pb2.EnrollSubjectResponse:
                templates = admin.templates_from_photos(down, request, self._pool)
                enrolment = watchlist_pb2.EnrollSubjectRequest(
                    watchlist=request.watchlist,
                    subject_id=request.subject_id,
                    idempotency_key=request.idempotency_key,
                    info=request.info,
                    templates=templates,
                )
                return down.call("watchlist", down.watchlist.EnrollSubject, enrolment)

            return self._admin(
                "EnrollFromPhotos",
                enrol,
                watchlist=request.watchlist,
                subject_id=lambda r: r.subject.subject_id,
            )

    def _watchlist_admin(
        self, operation: str, request: Any, *, watchlist: str = "", subject_id: str = ""
    ) -> Any:
        with self._work() as down:
            method = getattr(down.watchlist, operation)
            return self._admin(
                operation,
                lambda: down.call("watchlist", method, request),
                watchlist=watchlist,
                subject_id=subject_id,
            )

    def RemoveSubject(self, request: watchlist_pb2.RemoveSubjectRequest, context: grpc.ServicerContext):
        return self._watchlist_admin(
            "RemoveSubject", request, watchlist=request.watchlist, subject_id=request.subject_id
        )

    def GetSubject(self, request: watchlist_pb2.GetSubjectRequest, context: grpc.ServicerContext):
        return self._watchlist_admin(
            "GetSubject", request, watchlist=request.watchlist, subject_id=request.subject_id
        )

    def ListSubjects(self, request: watchlist_pb2.ListSubjectsRequest, context: grpc.ServicerContext):
        return self._watchlist_admin("ListSubjects", request, watchlist=request.watchlist)

    def CreateWatchlist(self, request: watchlist_pb2.CreateWatchlistRequest, context: grpc.ServicerContext):
        return self._watchlist_admin("CreateWatchlist", request, watchlist=request.name)

    def ListWatchlists(self, request: watchlist_pb2.ListWatchlistsRequest, context: grpc.ServicerContext):
        return self._watchlist_admin("ListWatchlists", request)

    def DeleteWatchlist(self, request: watchlist_pb2.DeleteWatchlistRequest, context: grpc.ServicerContext):
        return self._watchlist_admin("DeleteWatchlist", request, watchlist=request.name)


def main() -> None:
    run_service("gateway", GatewaySettings, GatewayService)
