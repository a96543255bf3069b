"""The one face pipeline (facegate.pipeline) on real detection and embedding servers."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.errors import FaceRejected, InvalidArgument, ServiceFailure
from facegate.pipeline import ENROLMENT, EVALUATION, SUBJECT, FacePipeline, FacePolicy
from facegate.v1 import common_pb2, detection_pb2
from tests.docverify.conftest import unused_target
from tests.support import FACES

PHOTO = FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0001.jpg"
GROUP = FACES / "multi_face/2008_001009.jpg"


def image(path) -> common_pb2.Image:
    return common_pb2.Image(data=path.read_bytes())


@pytest.fixture(scope="module")
def pipeline(detection_server, embedding_server):
    with FacePipeline.connect(
        f"127.0.0.1:{detection_server.port}", f"127.0.0.1:{embedding_server.port}", budget_s=60
    ) as p:
        yield p


def test_policy_options_follow_the_model_geometry() -> None:
    spec = common_pb2.ModelSpec(input_size=160, margin=0.2)
    options = FacePolicy(min_face_size=40).options(spec)
    assert (options.alignment.size, round(options.alignment.margin, 3)) == (160, 0.2)
    assert options.return_crops and options.subject_only and options.min_face_size == 40
    assert not options.HasField("min_confidence")
    assert round(FacePolicy(margin=0.1).options(spec).alignment.margin, 3) == 0.1
    # Enrolment must see every face to refuse photos with a second large one.
    assert not ENROLMENT.options(spec).subject_only
    assert EVALUATION.options(spec).subject_selection == detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL


def test_template_is_unit_length_and_pinned_to_the_served_model(pipeline) -> None:
    template = pipeline.template(image(PHOTO), EVALUATION)
    assert template.vector.shape == (128,) and abs(float(np.linalg.norm(template.vector)) - 1) < 1e-4
    assert template.model_version == pipeline.model_spec().model_version
    assert template.to_proto().model_version == template.model_version
    assert 0 <= template.quality_score <= 1


def test_the_same_photo_gives_the_same_template_through_any_policy(pipeline) -> None:
    a = pipeline.template(image(PHOTO), SUBJECT).vector
    b = pipeline.template(image(PHOTO), EVALUATION).vector
    assert float(np.dot(a, b)) > 0.999


def test_faceless_photo_is_rejected_as_no_face(pipeline) -> None:
    with pytest.raises(FaceRejected) as err:
        pipeline.template(image(FACES / "no_face/skimage_coffee.png"), SUBJECT, "probe photo")
    assert err.value.reason == FaceRejected.NO_FACE and "probe photo" in err.value.message


def test_enrolment_refuses_a_group_photo_that_the_subject_policy_accepts(pipeline) -> None:
    assert pipeline.template(image(GROUP), SUBJECT).vector.shape == (128,)
    with pytest.raises(FaceRejected) as err:
        pipeline.template(image(GROUP), FacePolicy(other_face_ratio=0.0))
    assert err.value.reason == FaceRejected.SEVERAL_FACES


def test_enrolment_refuses_low_quality_faces(pipeline) -> None:
    # Dev photos are 150 px: the eyes are closer than the 60 px gate-camera minimum.
    with pytest.raises(FaceRejected) as err:
        pipeline.template(image(PHOTO), ENROLMENT)
    assert err.value.reason == FaceRejected.LOW_QUALITY and "inter_eye_distance" in err.value.message


def test_unreadable_bytes_are_the_callers_error_naming_the_image(pipeline) -> None:
    with pytest.raises(InvalidArgument) as err:
        pipeline.template(common_pb2.Image(data=b"not an image"), SUBJECT, "live image")
    assert err.value.message.startswith("live image: ") and err.value.service == "detection"


def test_a_service_that_does_not_answer_is_a_service_failure() -> None:
    target = unused_target()
    with FacePipeline.connect(target, target, budget_s=2) as dead, pytest.raises(ServiceFailure) as err:
        dead.template(image(PHOTO))
    assert err.value.service == "embedding" and "UNAVAILABLE" in err.value.message
