"""Camera-like frame sources for ``facegate verify --live-video``: a video file or a folder of images,
played at a given frame rate.

A video is decoded with OpenCV (``opencv-python-headless``, installed with the detection group and
in the dev venv; the client package itself does not require it) and each frame re-encoded as JPEG,
as a gate camera sends it. A folder plays its images (JPEG, PNG, WebP, JPEG 2000) in name order, as
they are. :func:`paced` releases frames no faster than the rate, so the gateway sees the stream a
real camera would produce (and skips frames the same way when it is slower than the camera).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".jp2", ".j2k"})
JPEG_QUALITY = 90


class FrameSourceError(ValueError):
    """The path holds no frames this module can play (the message says why)."""


def frames_from(path: Path) -> Iterator[bytes]:
    """Encoded frames of a folder of images (name order) or a video file."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FrameSourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return (p.read_bytes() for p in images)
    if not path.is_file():
        raise FrameSourceError(f"{path}: no such file or folder")
    return _video_frames(path)


def _video_frames(path: Path) -> Iterator[bytes]:
    try:
        import cv2
    except ImportError:
        raise FrameSourceError("reading a video needs OpenCV: pip install opencv-python-headless") from None
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameSourceError(f"{path}: OpenCV cannot open it as a video")

    def frames() -> Iterator[bytes]:
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    yield jpeg.tobytes()
        finally:
            capture.release()

    return frames()


def paced(frames: Iterable[bytes], fps: float) -> Iterator[bytes]:
    """``frames`` released at ``fps`` frames per second at most (the first at once)."""
    started = time.monotonic()
    for i, frame in enumerate(frames):
        wait = started + i / fps - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield frame
