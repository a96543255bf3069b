"""gRPC servicer for the docverify service: MRZ checks, portrait extraction and the 1:1 decision.

Verify's kiosk path costs two sequential round trips (docs/docverify.md has the diagram): both
Detect calls (live capture, document portrait) run concurrently and return aligned crops in the
embedding model's geometry, then one Embed call templates both crops. The model spec behind the
geometry and the threshold is fetched once and cached. MRZ and DG2 parsing are local.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import grpc
import numpy as np

from facegate.v1 import common_pb2, detection_pb2, docverify_pb2, docverify_pb2_grpc
from services.docverify import metrics
from services.docverify.config import DocverifySettings
from services.docverify.decision import Findings, decide
from services.docverify.dg2 import Dg2Error, parse_dg2
from services.docverify.downstream import (
    Downstream,
    DownstreamRejected,
    DownstreamUnavailable,
    ModelVersionChanged,
)
from services.docverify.mrz_check import MrzReport, check_mrz, parse_decision_date
from services.docverify.portrait import live_options, portrait_options, portrait_region, subject
from services.docverify.quality import judge, portrait_bounds
from services.runtime.config import RuntimeSettings
from services.runtime.errors import FacegateError, FailedPrecondition, InvalidArgument, NotFound
from services.runtime.images import decode_image, encode_png
from services.runtime.server import run_service
from services.runtime.thresholds import load_thresholds

log = logging.getLogger("facegate.docverify")

R = common_pb2.ReasonCode
SOURCE = docverify_pb2.PortraitSource
_FORMAT_HINT = {"JPEG": common_pb2.IMAGE_FORMAT_JPEG, "JPEG2000": common_pb2.IMAGE_FORMAT_JPEG2000}


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
        self.downstream: Downstream | None = None
        self.bounds = portrait_bounds(settings)

    def register(self, server: grpc.Server) -> None:
        docverify_pb2_grpc.add_DocVerifyServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        """Open the channels. Downstream services may still be starting: they are not waited for;
        until they answer, Verify fails closed (SERVICE_UNAVAILABLE) and MRZ checks still work."""
        if self.downstream is None:
            s = self.settings
            self.downstream = Downstream(s.detection_target, s.embedding_target, s.downstream_timeout_s)

    def close(self) -> None:
        if self.downstream is not None:
            self.downstream.close()
            self.downstream = None

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
            rgb = self._decode(face.image, f"DG2 {face.image_format} image")
            return docverify_pb2.ExtractPortraitResponse(
                portrait=common_pb2.Image(data=face.image, format_hint=_FORMAT_HINT[face.image_format]),
                source=SOURCE.PORTRAIT_SOURCE_DG2,
                width=rgb.shape[1],
                height=rgb.shape[0],
            )
        if which == "page_scan":
            page = request.page_scan
            rgb = self._decode(page.data, "page_scan", page.format_hint)
            spec = self._spec()
            response = self._detect_one(
                detection_pb2.DetectRequest(image=page, options=portrait_options(spec, self.settings)),
                "page_scan",
            )
            face = subject(response)
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

    def _decode(self, data: bytes, what: str, hint: int = 0) -> np.ndarray:
        names = {1: "JPEG", 2: "PNG", 3: "WEBP", 4: "JPEG2000"}
        try:
            return decode_image(
                data,
                max_bytes=self.runtime.image_max_bytes,
                max_pixels=self.runtime.image_max_pixels,
                format_hint=names.get(hint),
            )
        except FacegateError as exc:
            exc.message = f"{what}: {exc.message}"
            raise

    def _spec(self) -> common_pb2.ModelSpec:
        assert self.downstream is not None
        return self.downstream.model_spec()

    def _detect_one(self, request: detection_pb2.DetectRequest, what: str) -> detection_pb2.DetectResponse:
        assert self.downstream is not None
        try:
            return self.downstream.detect_result(self.downstream.detect_async(request))
        except DownstreamRejected as exc:
            exc.message = f"{what}: {exc.message}"
            raise

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

        portrait, source = self._portrait_image(request, which, findings)
        response.portrait_source = source
        if portrait is not None:
            try:
                self._compare(request, portrait, source, findings, response)
            except ModelVersionChanged:
                findings.reasons = [
                    r
                    for r in findings.reasons
                    if r.code in (R.REASON_CODE_MRZ_INVALID, R.REASON_CODE_DOCUMENT_EXPIRED)
                ]
                try:
                    self._compare(request, portrait, source, findings, response)
                except ModelVersionChanged:
                    findings.add(
                        R.REASON_CODE_SERVICE_UNAVAILABLE, "embedding model changed twice during the request"
                    )
            except DownstreamUnavailable as exc:
                findings.add(R.REASON_CODE_SERVICE_UNAVAILABLE, exc.message)

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
    ) -> tuple[common_pb2.Image | None, int]:
        """The document image to detect on; a bad DG2 becomes a reason, not an error."""
        if which == "portrait_image":
            return request.portrait_image, SOURCE.PORTRAIT_SOURCE_IMAGE
        if which == "page_scan":
            return request.page_scan, SOURCE.PORTRAIT_SOURCE_PAGE_SCAN
        try:
            with _stage("dg2"):
                face = parse_dg2(request.dg2, max_bytes=self.settings.dg2_max_bytes).primary
        except Dg2Error as exc:
            findings.add(R.REASON_CODE_DG2_INVALID, exc.message)
            return None, SOURCE.PORTRAIT_SOURCE_DG2
        return common_pb2.Image(
            data=face.image, format_hint=_FORMAT_HINT[face.image_format]
        ), SOURCE.PORTRAIT_SOURCE_DG2

    def _compare(
        self,
        request: docverify_pb2.VerifyRequest,
        portrait: common_pb2.Image,
        source: int,
        findings: Findings,
        response: docverify_pb2.VerifyResponse,
    ) -> None:
        """Detect both faces (overlapped), judge them, embed both in one call, score and threshold."""
        assert self.downstream is not None
        spec = self._spec()
        self._threshold(spec.model_version, request, findings)  # an uncalibrated FAR fails before any work
        with _stage("detect"):
            live_call = self.downstream.detect_async(
                detection_pb2.DetectRequest(image=request.live, options=live_options(spec, self.settings))
            )
            portrait_call = self.downstream.detect_async(
                detection_pb2.DetectRequest(image=portrait, options=portrait_options(spec, self.settings))
            )
            try:
                live = self._detect_result(live_call, "live image", findings)
                doc = self._detect_result(portrait_call, _PORTRAIT_WHAT[source], findings)
            finally:
                portrait_call.cancel()  # no-op when done; frees the call when the live side failed
        live_face = doc_face = None
        if live is not None:
            live_face = subject(live)
            if live_face is None:
                findings.add(R.REASON_CODE_NO_FACE, "no face found in the live image")
            else:
                response.live_quality.CopyFrom(live_face.quality)
                if live.faces_total > 1:
                    findings.add(
                        R.REASON_CODE_MULTIPLE_FACES,
                        f"{live.faces_total} faces in the live image; exactly one is required",
                    )
                if not live_face.quality.acceptable:
                    findings.add(
                        R.REASON_CODE_QUALITY_TOO_LOW, "live image fails " + _failed(live_face.quality)
                    )
        if doc is not None:
            doc_face = subject(doc)
            if doc_face is None:
                findings.add(
                    R.REASON_CODE_PORTRAIT_NOT_FOUND, f"no face found in the {_PORTRAIT_WHAT[source]}"
                )
            else:
                verdict = judge(doc_face.quality, self.bounds)
                response.portrait_quality.CopyFrom(verdict)
                if not verdict.acceptable:
                    findings.add(R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW, "portrait fails " + _failed(verdict))
        if live_face is None or doc_face is None:
            return
        with _stage("embed"):
            (live_t, doc_t), version = self.downstream.embed([live_face.aligned, doc_face.aligned])
        response.model_version = version
        findings.similarity = float(np.dot(np.asarray(live_t, np.float64), np.asarray(doc_t, np.float64)))

    def _threshold(self, version: str, request: docverify_pb2.VerifyRequest, findings: Findings) -> None:
        """The calibrated operating point for ``version``; none calibrated -> a fail-closed reason."""
        findings.threshold, findings.target_far = None, 0.0
        try:
            thresholds = load_thresholds(version, self.settings.calibration_dir)
        except FailedPrecondition as exc:
            findings.add(R.REASON_CODE_SERVICE_UNAVAILABLE, exc.message)
            return
        far = request.target_far if request.HasField("target_far") else self.settings.default_far
        point = thresholds.at_far(far)  # InvalidArgument when the FAR asked for was not calibrated
        findings.threshold = point.threshold
        findings.target_far = point.far

    def _detect_result(
        self, call: grpc.Future, what: str, findings: Findings
    ) -> detection_pb2.DetectResponse | None:
        assert self.downstream is not None
        try:
            return self.downstream.detect_result(call)
        except DownstreamRejected as exc:
            if what.startswith("DG2"):
                findings.add(R.REASON_CODE_DG2_INVALID, f"{what}: {exc.message}")
                return None
            exc.message = f"{what}: {exc.message}"
            raise


_PORTRAIT_WHAT = {
    SOURCE.PORTRAIT_SOURCE_IMAGE: "portrait image",
    SOURCE.PORTRAIT_SOURCE_DG2: "DG2 portrait",
    SOURCE.PORTRAIT_SOURCE_PAGE_SCAN: "page scan",
}


def _failed(quality: common_pb2.Quality) -> str:
    names = [common_pb2.QualityCheck.Name(c).removeprefix("QUALITY_CHECK_").lower() for c in quality.failed]
    return ", ".join(names) or "quality"


def main() -> None:
    run_service("docverify", DocverifySettings, DocVerifyService)
