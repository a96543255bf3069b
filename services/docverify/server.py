"""gRPC servicer for the docverify service: MRZ checks, portrait extraction and the 1:1 decision.

Verify's kiosk path costs two sequential round trips (docs/docverify.md has the diagram): both
Detect calls (live capture, document portrait) run concurrently and return aligned crops in the
embedding model's geometry, then one Embed call templates both crops. Both go through the client
layer's face pipeline (``facegate.pipeline``): the model spec behind the geometry and the
threshold is fetched once and cached, the model version is pinned, and the request id and the
caller's remaining deadline travel with every downstream call. MRZ and DG2 parsing are local.

Two kinds of downstream failure lead to different answers: a service that gives no answer
(``ServiceFailure``) makes the decision INCONCLUSIVE with SERVICE_UNAVAILABLE (fail closed, never
MATCH); a service that refuses *our input* (InvalidArgument / ResourceExhausted) is passed back
with its code, naming which image was bad.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import grpc
import numpy as np

from facegate.errors import ServiceFailure
from facegate.pipeline import FacePipeline, failed_checks, subject_face
from facegate.single_face import search_floor, with_single_face
from facegate.v1 import common_pb2, detection_pb2, docverify_pb2, docverify_pb2_grpc
from services.docverify import metrics
from services.docverify.config import DocverifySettings
from services.docverify.decision import Findings, decide
from services.docverify.dg2 import Dg2Error, parse_dg2
from services.docverify.mrz_check import MrzReport, check_mrz, parse_decision_date
from services.docverify.portrait import (
    live_full_policy,
    live_policy,
    portrait_policy,
    portrait_region,
    portrait_searches,
    profile_falls_short,
)
from services.docverify.quality import judge, portrait_bounds
from services.docverify.thresholds import Calibration, calibrated_source
from services.runtime import mtls
from services.runtime.config import RuntimeSettings
from services.runtime.errors import InvalidArgument, NotFound, ResourceExhausted
from services.runtime.images import HINT_OF_FORMAT, decode_message, encode_png
from services.runtime.server import run_service

log = logging.getLogger("facegate.docverify")

R = common_pb2.ReasonCode
SOURCE = docverify_pb2.PortraitSource


@contextmanager
def _stage(name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.STAGE_SECONDS.labels(name).observe(time.perf_counter() - started)


def mrz_result(report: MrzReport) -> docverify_pb2.MrzResult:
    return docverify_pb2.MrzResult(
        format=report.format,
        valid=report.valid,
        document_type=report.document_type,
        issuing_state=report.issuing_state,
        document_number=report.document_number,
        nationality=report.nationality,
        birth_date=report.birth_date.isoformat() if report.birth_date else "",
        expiry_date=report.expiry_date.isoformat() if report.expiry_date else "",
        sex=report.sex,
        expired=report.expired,
        checks=[docverify_pb2.MrzCheck(field=c.field, valid=c.valid) for c in report.checks],
        errors=report.errors,
    )


class DocVerifyService(docverify_pb2_grpc.DocVerifyServiceServicer):
    service_names = ("facegate.v1.DocVerifyService",)

    def __init__(self, settings: DocverifySettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime
        self.pipeline: FacePipeline | None = None
        self.bounds = portrait_bounds(settings)

    def register(self, server: grpc.Server) -> None:
        docverify_pb2_grpc.add_DocVerifyServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        """Open the channels. Downstream services may still be starting: they are not waited for;
        until they answer, Verify fails closed (SERVICE_UNAVAILABLE) and MRZ checks still work."""
        if self.pipeline is None:
            s = self.settings
            self.pipeline = FacePipeline.connect(
                s.detection_target,
                s.embedding_target,
                budget_s=s.downstream_timeout_s,
                credentials=mtls.channel_credentials(self.runtime),
            )

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None

    # ---- ParseMrz -------------------------------------------------------------------------

    def ParseMrz(
        self, request: docverify_pb2.ParseMrzRequest, context: grpc.ServicerContext
    ) -> docverify_pb2.MrzResult:
        on = parse_decision_date(request.decision_date)
        report = self._check_mrz(request.mrz, on)
        return mrz_result(report)

    def _check_mrz(self, text: str, on) -> MrzReport:
        with _stage("mrz"):
            report = check_mrz(text, on)
        metrics.MRZ_RESULTS.labels(report.format or "unrecognised", str(report.valid).lower()).inc()
        return report

    # ---- ExtractPortrait ------------------------------------------------------------------

    def ExtractPortrait(
        self, request: docverify_pb2.ExtractPortraitRequest, context: grpc.ServicerContext
    ) -> docverify_pb2.ExtractPortraitResponse:
        which = request.WhichOneof("source")
        if which == "dg2":
            face = parse_dg2(request.dg2, max_bytes=self.settings.dg2_max_bytes).primary
            portrait = common_pb2.Image(data=face.image, format_hint=HINT_OF_FORMAT[face.image_format])
            rgb = self._decode(portrait, f"DG2 {face.image_format} image")
            return docverify_pb2.ExtractPortraitResponse(
                portrait=portrait,
                source=SOURCE.PORTRAIT_SOURCE_DG2,
                width=rgb.shape[1],
                height=rgb.shape[0],
            )
        if which == "page_scan":
            page = request.page_scan
            rgb = self._decode(page, "page_scan")
            assert self.pipeline is not None
            face = subject_face(self.pipeline.detect(page, portrait_policy(self.settings), "page_scan"))
            if face is None:
                raise NotFound("no portrait found on the page scan")
            x0, y0, x1, y1 = portrait_region(face.box, rgb.shape[1], rgb.shape[0])
            crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            return docverify_pb2.ExtractPortraitResponse(
                portrait=common_pb2.Image(data=encode_png(crop), format_hint=common_pb2.IMAGE_FORMAT_PNG),
                source=SOURCE.PORTRAIT_SOURCE_PAGE_SCAN,
                box=common_pb2.BoundingBox(x=x0, y=y0, width=x1 - x0, height=y1 - y0),
                width=x1 - x0,
                height=y1 - y0,
            )
        raise InvalidArgument("set one of dg2 or page_scan")

    def _decode(self, image: common_pb2.Image, what: str) -> np.ndarray:
        return decode_message(
            image, max_bytes=self.runtime.image_max_bytes, max_pixels=self.runtime.image_max_pixels, what=what
        )

    # ---- Verify ---------------------------------------------------------------------------

    def Verify(
        self, request: docverify_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> docverify_pb2.VerifyResponse:
        if not request.live.data:
            raise InvalidArgument("live image is required")
        which = request.WhichOneof("portrait")
        if which is None:
            raise InvalidArgument("set one of portrait_image, dg2 or page_scan")
        if request.HasField("target_far") and not 0 < request.target_far < 1:  # NaN fails too
            raise InvalidArgument(f"target_far {request.target_far!r} must lie in (0, 1)")
        on = parse_decision_date(request.decision_date)
        findings = Findings()
        response = docverify_pb2.VerifyResponse()

        if request.mrz:
            report = self._check_mrz(request.mrz, on)
            response.mrz.CopyFrom(mrz_result(report))
            if not report.valid:
                findings.add(R.REASON_CODE_MRZ_INVALID, "; ".join(report.errors)[:500])
            if report.expired:
                findings.add(R.REASON_CODE_DOCUMENT_EXPIRED, f"document expired on {report.expiry_date}")

        portrait, source, key = self._portrait_image(request, which, findings)
        response.portrait_source = source
        if portrait is not None:
            assert self.pipeline is not None
            try:
                part, details = self.pipeline.redo_on_model_change(
                    lambda: self._compare(request, portrait, source, key)
                )
            except ServiceFailure as exc:
                findings.add(R.REASON_CODE_SERVICE_UNAVAILABLE, exc.message)
            else:
                findings.reasons.extend(part.reasons)
                findings.similarity, findings.threshold = part.similarity, part.threshold
                findings.target_far = part.target_far
                response.MergeFrom(details)

        outcome = decide(findings, self.settings.grey_zone)
        response.outcome = outcome
        if findings.similarity is not None:
            response.similarity = findings.similarity
            metrics.SIMILARITY.observe(findings.similarity)
        response.threshold = findings.threshold if findings.threshold is not None else 0.0
        response.target_far = findings.target_far
        response.reasons.extend(findings.reasons)
        source_name = SOURCE.Name(source).removeprefix("PORTRAIT_SOURCE_").lower()
        metrics.DECISIONS.labels(
            docverify_pb2.MatchOutcome.Name(outcome).removeprefix("MATCH_OUTCOME_").lower(), source_name
        ).inc()
        for reason in findings.reasons:
            metrics.REASONS.labels(R.Name(reason.code).removeprefix("REASON_CODE_").lower()).inc()
        return response

    def _portrait_image(
        self, request: docverify_pb2.VerifyRequest, which: str, findings: Findings
    ) -> tuple[common_pb2.Image | None, int, str]:
        """The document image to detect on, its source and calibration key; a bad DG2 becomes a
        reason, not an error."""
        if which == "portrait_image":
            return request.portrait_image, SOURCE.PORTRAIT_SOURCE_IMAGE, "image"
        if which == "page_scan":
            return request.page_scan, SOURCE.PORTRAIT_SOURCE_PAGE_SCAN, "page_scan"
        dg2 = SOURCE.PORTRAIT_SOURCE_DG2
        try:
            with _stage("dg2"):
                face = parse_dg2(request.dg2, max_bytes=self.settings.dg2_max_bytes).primary
        except Dg2Error as exc:
            findings.add(R.REASON_CODE_DG2_INVALID, exc.message)
            return None, dg2, calibrated_source(dg2)
        image = common_pb2.Image(data=face.image, format_hint=HINT_OF_FORMAT[face.image_format])
        return image, dg2, calibrated_source(dg2, face.image_format)

    def _compare(
        self, request: docverify_pb2.VerifyRequest, portrait: common_pb2.Image, source: int, key: str
    ) -> tuple[Findings, docverify_pb2.VerifyResponse]:
        """Detect both faces (overlapped), judge them, embed both in one call, score and threshold.

        Returns its own findings and response details, so a redo after a model change starts clean.
        """
        assert self.pipeline is not None
        findings, details = Findings(), docverify_pb2.VerifyResponse()
        spec = self.pipeline.model_spec()
        calibration = self._calibration(spec.model_version, request, key, findings)  # bad FAR: fails here
        with _stage("detect"):
            live_call = self.pipeline.detect_async(request.live, live_policy(self.settings))
            searches = portrait_searches(
                self.settings, portrait.data, dg2=source == SOURCE.PORTRAIT_SOURCE_DG2
            )
            portrait_call = self.pipeline.detect_async(portrait, searches[0])
            try:
                live = self._detect_result(live_call, "live image", findings)
                if live is not None and live.subject_index < 0 and self.settings.live_kiosk_min_face_size:
                    # Nothing large enough: search the whole frame, so "too far away" and "no face"
                    # get their own instructions. Only this (RETRY) path pays for the second pass.
                    metrics.LIVE_FULL_SEARCHES.inc()
                    full = self.pipeline.detect_async(request.live, live_full_policy(self.settings))
                    live = self._detect_result(full, "live image", findings)
                doc = self._detect_result(portrait_call, _PORTRAIT_WHAT[source], findings)
                if (
                    doc is not None
                    and len(searches) > 1
                    and (short := profile_falls_short(subject_face(doc), self.bounds))
                ):
                    metrics.PORTRAIT_FULL_SEARCHES.labels(short).inc()
                    whole = self.pipeline.detect_async(portrait, searches[1])
                    doc = self._detect_result(whole, _PORTRAIT_WHAT[source], findings)
            finally:
                portrait_call.cancel()  # no-op when done; frees the call when the live side failed
        live_face = self._judge_live(live, findings, details) if live is not None else None
        doc_face = self._judge_portrait(doc, source, findings, details) if doc is not None else None
        if live_face is None or doc_face is None:
            return findings, details
        if calibration is not None:
            self._threshold(calibration, doc_face, findings, details)
        with _stage("embed"):
            live_t, doc_t = self.pipeline.embed([live_face.aligned, doc_face.aligned])
        details.model_version = spec.model_version
        details.live_template.CopyFrom(
            common_pb2.Embedding(
                values=live_t.tolist(), model_id=spec.model_id, model_version=spec.model_version
            )
        )
        findings.similarity = float(np.dot(live_t.astype(np.float64), doc_t.astype(np.float64)))
        return findings, details

    def _judge_live(
        self, live: detection_pb2.DetectResponse, findings: Findings, details: docverify_pb2.VerifyResponse
    ) -> detection_pb2.DetectedFace | None:
        """The traveller's face under detection's gate-camera verdict plus the single-face measure:
        another face of comparable size is a second person (MULTIPLE_FACES); smaller ones are
        background faces, named in the measure and not refused (facegate/single_face.py)."""
        face = subject_face(live)
        if face is None:
            findings.add(R.REASON_CODE_NO_FACE, "no face found in the live image")
            return None
        s = self.settings
        floor = search_floor(face, s.live_kiosk_min_face_size, s.live_min_face_size)
        quality, people = with_single_face(live, s.live_other_face_ratio, floor)
        details.live_quality.CopyFrom(quality)
        if people > 1:
            single = quality.measures[-1]
            findings.add(
                R.REASON_CODE_MULTIPLE_FACES,
                f"{people} people in the live image; exactly one is required: {single.detail}",
            )
        if not face.quality.acceptable:
            findings.add(R.REASON_CODE_QUALITY_TOO_LOW, "live image fails " + failed_checks(face.quality))
        return face

    def _judge_portrait(
        self,
        doc: detection_pb2.DetectResponse,
        source: int,
        findings: Findings,
        details: docverify_pb2.VerifyResponse,
    ) -> detection_pb2.DetectedFace | None:
        face = subject_face(doc)
        if face is None:
            findings.add(R.REASON_CODE_PORTRAIT_NOT_FOUND, f"no face found in the {_PORTRAIT_WHAT[source]}")
            return None
        verdict = judge(face.quality, self.bounds)
        details.portrait_quality.CopyFrom(verdict)
        if not verdict.acceptable:
            findings.add(R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW, "portrait fails " + failed_checks(verdict))
        return face

    def _calibration(
        self, version: str, request: docverify_pb2.VerifyRequest, key: str, findings: Findings
    ) -> Calibration | None:
        """The source's calibration for ``version``; none -> a fail-closed reason. A FAR the source
        was not calibrated for is InvalidArgument."""
        far = request.target_far if request.HasField("target_far") else self.settings.default_far
        found = Calibration.load(version, key, far, self.settings.calibration_dir)
        if isinstance(found, str):
            findings.add(R.REASON_CODE_SERVICE_UNAVAILABLE, found)
            return None
        return found

    @staticmethod
    def _threshold(
        calibration: Calibration,
        doc_face: detection_pb2.DetectedFace,
        findings: Findings,
        details: docverify_pb2.VerifyResponse,
    ) -> None:
        """The threshold of the portrait's source and size band; a portrait below every band is refused."""
        threshold, origin = calibration.judge(doc_face.quality)
        if threshold is None:
            findings.add(R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW, str(origin))
            return
        findings.threshold, findings.target_far = threshold, calibration.far
        details.threshold_origin.CopyFrom(origin)

    def _detect_result(
        self, call: grpc.Future, what: str, findings: Findings
    ) -> detection_pb2.DetectResponse | None:
        """Detection's answer; a DG2 image that detection refuses is a DG2 reason, not an error."""
        assert self.pipeline is not None
        try:
            return self.pipeline.detect_result(call, what)
        except (InvalidArgument, ResourceExhausted) as exc:
            if what.startswith("DG2"):
                findings.add(R.REASON_CODE_DG2_INVALID, exc.message)
                return None
            raise


_PORTRAIT_WHAT = {
    SOURCE.PORTRAIT_SOURCE_IMAGE: "portrait image",
    SOURCE.PORTRAIT_SOURCE_DG2: "DG2 portrait",
    SOURCE.PORTRAIT_SOURCE_PAGE_SCAN: "page scan",
}


def main() -> None:
    run_service("docverify", DocverifySettings, DocVerifyService)
