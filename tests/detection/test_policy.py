"""Policy options: subject choice, trimming, thresholds, crops on demand; and the service metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prometheus_client import REGISTRY

from facegate.v1 import detection_pb2
from tests.detection.helpers import TIMEOUT, request
from tests.support import FACES

GROUP = FACES / "multi_face" / "2008_002506.jpg"  # three faces of different sizes
LARGEST = detection_pb2.SUBJECT_SELECTION_LARGEST
CENTRAL = detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL


def _area(face):
    return face.box.width * face.box.height


def test_faces_sorted_by_confidence_and_one_subject(stub):
    reply = stub.Detect(request(GROUP.read_bytes()), timeout=TIMEOUT)
    assert len(reply.faces) == reply.faces_total >= 3
    confidences = [f.confidence for f in reply.faces]
    assert confidences == sorted(confidences, reverse=True)
    assert [f.is_subject for f in reply.faces].count(True) == 1
    assert reply.faces[reply.subject_index].is_subject
    assert not any(f.HasField("aligned") for f in reply.faces)


def test_largest_and_most_central_selection(stub):
    largest = stub.Detect(request(GROUP.read_bytes(), subject_selection=LARGEST), timeout=TIMEOUT)
    subject = largest.faces[largest.subject_index]
    assert _area(subject) == max(_area(f) for f in largest.faces)
    central = stub.Detect(request(GROUP.read_bytes(), subject_selection=CENTRAL), timeout=TIMEOUT)
    w, h = central.image_width, central.image_height

    def offset(face):
        cx, cy = face.box.x + face.box.width / 2, face.box.y + face.box.height / 2
        return ((cx - w / 2) ** 2 + (cy - h / 2) ** 2) ** 0.5 / _area(face) ** 0.5

    chosen = central.faces[central.subject_index]
    assert offset(chosen) == min(offset(f) for f in central.faces)


def test_subject_only_and_max_faces(stub):
    data = (FACES / "multi_face" / "2008_004176.jpg").read_bytes()  # seven faces
    full = stub.Detect(request(data, max_faces=0), timeout=TIMEOUT)
    assert len(full.faces) >= 7
    only = stub.Detect(request(data, subject_only=True, return_crops=True), timeout=TIMEOUT)
    assert len(only.faces) == 1 and only.subject_index == 0 and only.faces[0].is_subject
    assert only.faces_total == len(full.faces)
    assert only.faces[0].box == full.faces[full.subject_index].box
    assert len(only.faces[0].aligned.rgb) == 160 * 160 * 3
    two = stub.Detect(request(data, max_faces=2), timeout=TIMEOUT)
    assert len(two.faces) == 2 and two.faces_total == len(full.faces)
    assert two.faces[two.subject_index].box == full.faces[full.subject_index].box


def test_min_face_size_and_min_confidence_filter(stub):
    data = GROUP.read_bytes()
    full = stub.Detect(request(data), timeout=TIMEOUT)
    cut = min(f.box.width for f in full.faces) + 1
    bigger = stub.Detect(request(data, min_face_size=int(cut)), timeout=TIMEOUT)
    assert 0 < len(bigger.faces) < len(full.faces)
    assert all(min(f.box.width, f.box.height) >= cut for f in bigger.faces)
    strict = stub.Detect(request(data, min_confidence=1.0), timeout=TIMEOUT)
    assert all(f.confidence >= 1.0 for f in strict.faces)
    assert len(strict.faces) < len(full.faces)


def test_metrics_count_images_faces_and_rejects(stub):
    def value(name, labels=None):
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    images = value("facegate_detection_faces_per_image_count")
    with_face = value("facegate_detection_images_total", {"outcome": "face"})
    ied = value("facegate_detection_quality_rejects_total", {"check": "QUALITY_CHECK_INTER_EYE_DISTANCE"})
    batches = value("facegate_detection_batch_size_count")
    stub.Detect(
        request((FACES / "images" / "Zhu_Rongji" / "Zhu_Rongji_0001.jpg").read_bytes()), timeout=TIMEOUT
    )
    stub.DetectBatch(
        detection_pb2.DetectBatchRequest(images=[detection_pb2.DetectRequest().image]), timeout=TIMEOUT
    )
    assert value("facegate_detection_faces_per_image_count") == images + 1
    assert value("facegate_detection_images_total", {"outcome": "face"}) == with_face + 1
    assert (
        value("facegate_detection_quality_rejects_total", {"check": "QUALITY_CHECK_INTER_EYE_DISTANCE"})
        == ied + 1
    )
    assert value("facegate_detection_batch_size_count") == batches + 1
    assert value("facegate_detection_images_total", {"outcome": "error"}) >= 1


def test_concurrent_requests_get_the_same_answers_as_serial_ones(stub):
    """MTCNN is shared by all handler threads; parallel calls must not mix up their results."""
    paths = [*sorted((FACES / "images").glob("*/*.jpg"))[::100], GROUP]
    serial = [stub.Detect(request(p.read_bytes()), timeout=TIMEOUT) for p in paths]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(lambda p: stub.Detect(request(p.read_bytes()), timeout=TIMEOUT), paths))
    for a, b in zip(serial, parallel, strict=True):
        assert len(a.faces) == len(b.faces)
        assert a.subject_index == b.subject_index
        for fa, fb in zip(a.faces, b.faces, strict=True):
            assert abs(fa.box.x - fb.box.x) < 1.0 and abs(fa.box.y - fb.box.y) < 1.0
