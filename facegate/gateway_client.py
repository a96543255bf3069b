"""The gateway from Python: every operation a kiosk, an officer or an admin may call, one method each.

::

    import facegate
    with facegate.Gateway(key=os.environ["FACEGATE_KIOSK_KEY"]) as gw:
        decision = gw.verify_traveller("live.jpg", portrait="passport.jpg", gate_id="gate-7")
        decision.outcome, decision.instruction  # "ACCEPT" | "RETRY" | "REFER", "Please proceed"

The key comes from ``key=`` or the ``FACEGATE_API_KEY`` environment variable and travels as
``authorization: Bearer <key>``; ``timeout`` bounds each method call. Decisions come back as plain
:class:`Decision` records; admin reads return the contract's messages (``facegate.v1``). Errors
are ``facegate.errors`` classes carrying the gRPC code (UNAUTHENTICATED, PERMISSION_DENIED, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from facegate.api import Candidate, Face, ImageLike, _face, as_image, document_request
from facegate.client import open_channel
from facegate.context import call_context
from facegate.endpoints import default_target
from facegate.errors import from_rpc_error
from facegate.v1 import common_pb2, detection_pb2, gateway_pb2, gateway_pb2_grpc, watchlist_pb2

if TYPE_CHECKING:
    from facegate.gateway_stream import FrameLike, FrameReport, StreamResult

GATEWAY = default_target("gateway")
API_KEY_ENV = "FACEGATE_API_KEY"
KINDS = {
    "wanted": watchlist_pb2.WATCHLIST_KIND_WANTED,
    "alert": watchlist_pb2.WATCHLIST_KIND_ALERT,
    "allow": watchlist_pb2.WATCHLIST_KIND_ALLOW,
}
#: An officer's outcome of a referral, by the name the SDK and the console use.
REFERRAL_OUTCOMES = {
    "admitted": gateway_pb2.REFERRAL_OUTCOME_ADMITTED,
    "refused": gateway_pb2.REFERRAL_OUTCOME_REFUSED,
    "escalated": gateway_pb2.REFERRAL_OUTCOME_ESCALATED,
}


@dataclass(frozen=True)
class Score:
    name: str
    value: float
    threshold: float
    target_far: float
    calibration: str = ""  # which portrait source and size band set the threshold ("" for the main one)
    measured_far: float = 0.0  # the FAR that threshold gave on its calibration set (0: not reported)


@dataclass(frozen=True)
class Decision:
    """A gateway decision in plain types (a kiosk sees a REFER without reasons or scores)."""

    outcome: str  # "ACCEPT", "RETRY" or "REFER"
    reasons: tuple[tuple[str, str], ...]  # (code, message), e.g. ("NO_MATCH", "similarity 0.12 < ...")
    scores: tuple[Score, ...]
    instruction: str
    decision_id: str
    request_id: str
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decision_from_proto(decision: common_pb2.Decision) -> Decision:
    return Decision(
        outcome=common_pb2.Outcome.Name(decision.outcome).removeprefix("OUTCOME_"),
        reasons=tuple(
            (common_pb2.ReasonCode.Name(r.code).removeprefix("REASON_CODE_"), r.message)
            for r in decision.reasons
        ),
        scores=tuple(
            Score(s.name, s.value, s.threshold, s.target_far, s.calibration, s.measured_far)
            for s in decision.scores
        ),
        instruction=decision.instruction,
        decision_id=decision.decision_id,
        request_id=decision.request_id,
        model_version=decision.model_version,
        timings_ms={t.stage: t.milliseconds for t in decision.timings},
    )


class ReferralList(list):
    """A list of referral records that also says which gateway replicas did not answer
    (``unreachable_peers``): when it is not empty, their referrals are missing from the list."""

    unreachable_peers: list[str]

    def __init__(
        self, records: Iterable[gateway_pb2.AuditRecord] = (), unreachable_peers: Iterable[str] = ()
    ):
        super().__init__(records)
        self.unreachable_peers = list(unreachable_peers)


class Gateway:
    """A client of the gateway with one open channel; close it (or use ``with``) when done."""

    def __init__(
        self,
        target: str = GATEWAY,
        *,
        key: str | None = None,
        timeout: float = 30.0,
        root_certificates: bytes | None = None,
        client_certificate: tuple[bytes, bytes] | None = None,
        server_name: str = "",
    ) -> None:
        """``root_certificates`` (PEM) makes the channel TLS; ``client_certificate`` is a
        (private key, certificate chain) PEM pair for a gateway that requires mutual TLS;
        ``server_name`` is the name its certificate must hold when ``target`` is another (an
        in-cluster Service name in front of a gateway whose certificate names its public host)."""
        key = key if key is not None else os.environ.get(API_KEY_ENV, "")
        credentials = None
        if root_certificates or client_certificate:
            private_key, chain = client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key, chain)
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self.timeout = timeout
        options = [("grpc.ssl_target_name_override", server_name)] if server_name and credentials else []
        self._channel = open_channel(
            target, metadata=metadata, credentials=credentials, extra_options=options
        )
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _call(self, request_id: str | None = None) -> Iterator[None]:
        with call_context(request_id=request_id, timeout_s=self.timeout):
            try:
                yield
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, "gateway") from None

    # ---- kiosk ---------------------------------------------------------------------------------

    def verify_traveller(
        self,
        live: ImageLike,
        *,
        portrait: ImageLike | None = None,
        dg2: bytes | None = None,
        page_scan: ImageLike | None = None,
        mrz: str = "",
        gate_id: str = "",
        watchlists: Sequence[str] = (),
        request_id: str | None = None,
    ) -> Decision:
        """The gate decision for a live capture and one portrait source. Re-sending the same
        ``request_id`` (after a network glitch) returns the first decision, not a second one."""
        document = document_request(live, portrait=portrait, dg2=dg2, page_scan=page_scan, mrz=mrz)
        request = gateway_pb2.VerifyTravellerRequest(
            gate_id=gate_id, document=document, watchlists=list(watchlists)
        )
        with self._call(request_id):
            return decision_from_proto(self.stub.VerifyTraveller(request).decision)

    def verify_traveller_stream(
        self,
        frames: Iterable[FrameLike],
        *,
        portrait: ImageLike | None = None,
        dg2: bytes | None = None,
        page_scan: ImageLike | None = None,
        mrz: str = "",
        gate_id: str = "",
        watchlists: Sequence[str] = (),
        max_frames: int = 0,
        time_budget_s: float = 0.0,
        on_feedback: Callable[[FrameReport], None] | None = None,
        request_id: str | None = None,
    ) -> StreamResult:
        """The gate decision from a camera stream (``facegate.gateway_stream``): ``frames`` are sent
        as they come, ``on_feedback`` hears about each scored frame, the gateway decides on the best
        one. ``max_frames`` / ``time_budget_s`` (0: the gateway's) can only lower its caps."""
        from facegate.gateway_stream import collect, stream_requests

        request = gateway_pb2.VerifyTravellerRequest(
            gate_id=gate_id,
            document=document_request(b"", portrait=portrait, dg2=dg2, page_scan=page_scan, mrz=mrz),
            watchlists=list(watchlists),
        )
        request.document.ClearField("live")
        start = gateway_pb2.StreamStart(request=request, max_frames=max_frames, time_budget_s=time_budget_s)
        with self._call(request_id):
            responses = self.stub.VerifyTravellerStream(stream_requests(start, frames))
            try:
                return collect(responses, on_feedback)
            except BaseException:
                responses.cancel()  # e.g. on_feedback raised: end the stream, the gateway records nothing
                raise

    # ---- officer -------------------------------------------------------------------------------

    def identify(
        self,
        image: ImageLike,
        *,
        watchlists: Sequence[str] = (),
        top_k: int = 5,
        threshold: float | None = None,
    ) -> tuple[Decision, list[Candidate]]:
        request = gateway_pb2.IdentifyRequest(image=as_image(image), watchlists=list(watchlists), top_k=top_k)
        if threshold is not None:
            request.threshold = threshold
        with self._call():
            reply = self.stub.Identify(request)
        candidates = [Candidate.from_proto(c) for c in reply.result.candidates]
        return decision_from_proto(reply.decision), candidates

    def compare(self, first: ImageLike, second: ImageLike, *, target_far: float | None = None) -> Decision:
        request = gateway_pb2.CompareRequest(first=as_image(first), second=as_image(second))
        if target_far is not None:
            request.target_far = target_far
        with self._call():
            return decision_from_proto(self.stub.Compare(request).decision)

    def detect(self, image: ImageLike) -> list[Face]:
        with self._call():
            reply = self.stub.Detect(detection_pb2.DetectRequest(image=as_image(image)))
        return [_face(f) for f in reply.faces]

    def audit_record(self, decision_id: str) -> gateway_pb2.AuditRecord:
        with self._call():
            return self.stub.GetAuditRecord(gateway_pb2.GetAuditRecordRequest(decision_id=decision_id))

    def referrals(self, *, limit: int = 50, gate_id: str = "", open_only: bool = False) -> ReferralList:
        """Recent REFER decisions of every gateway replica, newest first; ``open_only``: those without
        an officer outcome yet. ``.unreachable_peers`` names replicas whose referrals are missing."""
        request = gateway_pb2.ListReferralsRequest(limit=limit, gate_id=gate_id, open_only=open_only)
        with self._call():
            reply = self.stub.ListReferrals(request)
        return ReferralList(reply.referrals, reply.unreachable_peers)

    def referral(self, decision_id: str) -> gateway_pb2.Referral:
        """One referral: the decision, its state, and its images while the gateway holds them."""
        with self._call():
            return self.stub.GetReferral(gateway_pb2.GetReferralRequest(decision_id=decision_id))

    def record_referral_outcome(self, decision_id: str, outcome: str) -> gateway_pb2.Referral:
        """Close a referral as "admitted", "refused" or "escalated" (audited; the images are dropped)."""
        request = gateway_pb2.RecordReferralOutcomeRequest(
            decision_id=decision_id, outcome=REFERRAL_OUTCOMES[outcome]
        )
        with self._call():
            return self.stub.RecordReferralOutcome(request)

    def confirm_watchlist_hit(self, decision_id: str) -> gateway_pb2.Referral:
        """This officer's confirmation of a referral's watchlist hit (a second officer must add theirs)."""
        with self._call():
            return self.stub.ConfirmWatchlistHit(
                gateway_pb2.ConfirmWatchlistHitRequest(decision_id=decision_id)
            )

    # ---- any role, ops -------------------------------------------------------------------------

    def whoami(self) -> gateway_pb2.WhoAmIResponse:
        """The key's id and role, as the gateway knows them."""
        with self._call():
            return self.stub.WhoAmI(gateway_pb2.WhoAmIRequest())

    def system_status(self) -> gateway_pb2.SystemStatus:
        """Ops: service health, model version, watchlist sizes and decision counts."""
        with self._call():
            return self.stub.GetSystemStatus(gateway_pb2.GetSystemStatusRequest())

    # ---- admin ---------------------------------------------------------------------------------

    def enroll(
        self,
        watchlist: str,
        photos: Sequence[ImageLike],
        *,
        subject_id: str = "",
        idempotency_key: str = "",
        info: watchlist_pb2.SubjectInfo | None = None,
    ) -> watchlist_pb2.EnrollSubjectResponse:
        """Enrol a subject from photos (each must hold exactly one acceptable face)."""
        request = gateway_pb2.EnrollFromPhotosRequest(
            watchlist=watchlist,
            subject_id=subject_id,
            idempotency_key=idempotency_key,
            info=info or watchlist_pb2.SubjectInfo(),
            photos=[as_image(p) for p in photos],
        )
        with self._call():
            return self.stub.EnrollFromPhotos(request)

    def check_enrolment_photos(self, photos: Sequence[ImageLike]) -> list[gateway_pb2.PhotoCheck]:
        """Each photo's verdict under the enrolment policy (nothing is enrolled): acceptable, or why not."""
        request = gateway_pb2.CheckEnrolmentPhotosRequest(photos=[as_image(p) for p in photos])
        with self._call():
            return list(self.stub.CheckEnrolmentPhotos(request).photos)

    def remove_subject(self, watchlist: str, subject_id: str) -> watchlist_pb2.RemoveSubjectResponse:
        with self._call():
            return self.stub.RemoveSubject(
                watchlist_pb2.RemoveSubjectRequest(watchlist=watchlist, subject_id=subject_id)
            )

    def get_subject(self, watchlist: str, subject_id: str) -> watchlist_pb2.Subject:
        with self._call():
            return self.stub.GetSubject(
                watchlist_pb2.GetSubjectRequest(watchlist=watchlist, subject_id=subject_id)
            )

    def list_subjects(
        self, watchlist: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> watchlist_pb2.ListSubjectsResponse:
        request = watchlist_pb2.ListSubjectsRequest(
            watchlist=watchlist, page_size=page_size, page_token=page_token
        )
        with self._call():
            return self.stub.ListSubjects(request)

    def create_watchlist(
        self, name: str, kind: str = "wanted", description: str = ""
    ) -> watchlist_pb2.Watchlist:
        request = watchlist_pb2.CreateWatchlistRequest(name=name, kind=KINDS[kind], description=description)
        with self._call():
            return self.stub.CreateWatchlist(request)

    def list_watchlists(self) -> list[watchlist_pb2.Watchlist]:
        with self._call():
            return list(self.stub.ListWatchlists(watchlist_pb2.ListWatchlistsRequest()).watchlists)

    def delete_watchlist(self, name: str) -> watchlist_pb2.DeleteWatchlistResponse:
        with self._call():
            return self.stub.DeleteWatchlist(watchlist_pb2.DeleteWatchlistRequest(name=name))
