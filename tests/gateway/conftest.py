"""The whole stack on loopback for the gateway tests: the session's shared detection and embedding
servers, a docverify and a watchlist service (Milvus Lite in a temp folder), and the gateway with
a key file, an audit log and the replay cache on the session's Redis. Real servers, real models."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import FACES


def gate_frame(photo: Path) -> bytes:
    """A 1280x720 gate-camera-like JPEG of a dev photo (the face fills most of the height)."""
    from tests.docverify.frames import live_frame

    return live_frame(np.asarray(Image.open(photo).convert("RGB")))


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


#: A dev identity whose gate-like frame passes the live quality policy and matches its other photo.
TRAVELLER = FACES / "images/Amram_Mitzna"
OTHER_PERSON = FACES / "images/Anne_McLellan/Anne_McLellan_0002.jpg"


@dataclass
class Stack:
    gateway: object  # RunningServer
    docverify: object
    watchlist: object
    detection: object
    embedding: object
    keys: dict[str, str]  # role -> plain key
    audit_log: Path
    servicer: object  # the GatewayService

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"


def sibling_settings(stack: Stack, audit_log: Path, **overrides: object):
    """GatewaySettings of another gateway on the session stack's services: the stack's keys, its own
    audit log, no retry cache, free ports; ``overrides`` add TLS, peers, ..."""
    from gateway.config import GatewaySettings
    from services.runtime.config import load_settings

    base = stack.servicer.settings
    return load_settings(
        GatewaySettings,
        port=0,
        metrics_port=-1,
        detection_target=base.detection_target,
        embedding_target=base.embedding_target,
        docverify_target=base.docverify_target,
        watchlist_target=base.watchlist_target,
        downstream_timeout_s=60,
        request_timeout_s=120,
        key_file=base.key_file,
        audit_log=audit_log,
        redis_url="",
        **overrides,
    )


@pytest.fixture(scope="session")
def stack(face_detection_server, face_embedding_server, redis_url, tmp_path_factory) -> Iterator[Stack]:
    from facegate.thresholds import CALIBRATION_DIR
    from gateway.config import GatewaySettings
    from gateway.keys import ROLES, env_var, generate_dev_keys
    from gateway.server import GatewayService
    from services.docverify.config import DocverifySettings
    from services.docverify.server import DocVerifyService
    from services.runtime.config import RuntimeSettings, load_settings
    from services.watchlist.config import WatchlistSettings
    from services.watchlist.server import WatchlistService
    from tests.support import serve

    root = tmp_path_factory.mktemp("gateway-stack")
    runtime = load_settings(RuntimeSettings)
    det, emb = (f"127.0.0.1:{s.port}" for s in (face_detection_server, face_embedding_server))
    docverify = DocVerifyService(
        load_settings(
            DocverifySettings,
            port=0,
            metrics_port=-1,
            detection_target=det,
            embedding_target=emb,
            downstream_timeout_s=60,
        ),
        runtime,
    )
    watchlist = WatchlistService(
        load_settings(
            WatchlistSettings,
            MILVUS_URI=str(root / "watchlist.db"),
            port=0,
            metrics_port=-1,
            calibration_dir=CALIBRATION_DIR,
        ),
        runtime,
    )
    plain = generate_dev_keys(root / "keys.json", root / "dev-keys.env")
    with serve(docverify, label="docverify-gw") as dv, serve(watchlist, label="watchlist-gw") as wl:
        settings = load_settings(
            GatewaySettings,
            port=0,
            metrics_port=0,
            detection_target=det,
            embedding_target=emb,
            docverify_target=f"127.0.0.1:{dv.port}",
            watchlist_target=f"127.0.0.1:{wl.port}",
            downstream_timeout_s=60,
            request_timeout_s=120,
            key_file=root / "keys.json",
            audit_log=root / "audit.log",
            FACEGATE_GATEWAY_REDIS_URL=redis_url,
        )
        gateway = GatewayService(settings, runtime)
        with serve(gateway, label="gateway") as gw:
            yield Stack(
                gw,
                dv,
                wl,
                face_detection_server,
                face_embedding_server,
                {role: plain[env_var(role)] for role in ROLES},
                root / "audit.log",
                gateway,
            )
        gateway.close()
    docverify.close()
    watchlist.close()
