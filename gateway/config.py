"""Gateway service settings (environment prefix FACEGATE_GATEWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS, default_target
from facegate.single_face import DEFAULT_OTHER_FACE_RATIO
from facegate.thresholds import CALIBRATION_DIR
from services.runtime.config import MetricsPort, Port, ServiceSettings

VAR = Path("var")


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_GATEWAY_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["gateway"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["gateway"][1]

    detection_target: str = Field(
        default_target("detection"), min_length=1, description="host:port of detection."
    )
    embedding_target: str = Field(
        default_target("embedding"), min_length=1, description="host:port of embedding."
    )
    watchlist_target: str = Field(
        default_target("watchlist"), min_length=1, description="host:port of watchlist."
    )
    docverify_target: str = Field(
        default_target("docverify"), min_length=1, description="host:port of docverify."
    )
    downstream_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Most any one downstream call may take (the caller's deadline can cut it shorter).",
    )
    request_timeout_s: float = Field(
        20.0,
        gt=0,
        le=600,
        description="Deadline of a client call that sets none; past it the decision fails closed.",
    )
    max_in_flight: int = Field(
        32,
        ge=1,
        le=10_000,
        description="Calls the gateway works on at once; more are refused at once with RESOURCE_EXHAUSTED.",
    )
    stream_max_frames: int = Field(
        30,
        ge=1,
        le=1000,
        description="VerifyTravellerStream: most frames scored before deciding on the best one "
        "(a kiosk may ask for fewer).",
    )
    stream_time_budget_s: float = Field(
        8.0,
        gt=0,
        le=120,
        description="VerifyTravellerStream: capture time from the first frame before deciding on the best "
        "frame so far (a kiosk may ask for less); also the longest wait for the start and the first frame.",
    )
    stream_decide_reserve_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="VerifyTravellerStream: time kept back from the caller's deadline for the decision; "
        "capture ends by then.",
    )
    stream_min_face_size: int = Field(
        100,
        ge=21,
        le=4096,
        description="VerifyTravellerStream: kiosk profile of the frame scoring (a face this large, searched "
        "on a scaled copy; the whole frame only when none is). Keep it at FACEGATE_DOCVERIFY_LIVE_KIOSK_MIN_FACE_SIZE.",
    )
    stream_other_face_ratio: float = Field(
        DEFAULT_OTHER_FACE_RATIO,
        gt=0,
        le=1,
        description="VerifyTravellerStream: another face this fraction of the traveller's size or more is a "
        "second person (MULTIPLE_FACES); smaller ones are background. Keep it at "
        "FACEGATE_DOCVERIFY_LIVE_OTHER_FACE_RATIO.",
    )

    key_file: Path = Field(
        VAR / "gateway" / "keys.json",
        description="API key file: key ids, roles and SHA-256 hashes only (make run writes a dev one).",
    )
    audit_log: Path = Field(
        VAR / "audit" / "audit.log",
        description="Append-only, hash-chained audit log (facegate audit verify).",
    )
    calibration_dir: Path = Field(
        CALIBRATION_DIR, description="Folder of calibrated thresholds (<model_version>.json) for Compare."
    )
    screen_far: float = Field(
        1e-3,
        gt=0,
        lt=1,
        description="False-accept rate per comparison that the kiosk's watchlist screening is "
        "calibrated at (a point of the model's calibration: 1e-2, 1e-3 and 1e-4 ship). Each listed "
        "person is one comparison, so a traveller on no list is flagged about this often times the "
        "list's size: measured, 28.5 % of travellers against 453 real people at 1e-3, 2.9 % at 1e-4 "
        "(docs/watchlist.md, 'Screening and list size'). An uncalibrated value refers every traveller.",
    )
    referral_hold_s: int = Field(
        3600,
        ge=1,
        le=86_400,
        description="Longest a REFER's live capture and portrait are held (in memory only) for the officer; "
        "they are dropped sooner when the officer records the outcome.",
    )
    referral_hold_max: int = Field(
        256,
        ge=0,
        le=100_000,
        description="Most referrals whose images are held at once; the oldest are dropped first (0 = none held).",
    )

    peers: str = Field(
        "",
        description="Every gateway replica, for referrals decided on another one: comma-separated "
        "host:port of their peer ports, a name resolving to all of them (a headless Service) allowed; "
        "this replica is skipped. Empty = a single replica.",
    )
    peer_port: int = Field(
        -1,
        ge=-1,
        le=65_535,
        description="Port serving the gateway's API to its peer replicas over the internal transport "
        "(mTLS with FACEGATE_MTLS_*); -1 = none.",
    )
    peer_server_name: str = Field(
        "",
        description="Name a peer's internal certificate is checked against when peers are dialled by "
        "address (e.g. the headless Service's DNS name); empty = the host of each peer target.",
    )
    peer_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Most an officer's call waits for each peer replica's answer."
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("FACEGATE_GATEWAY_REDIS_URL", "REDIS_URL"),
        description="Redis of the retry cache (a re-sent request id gets its first decision back); empty = none.",
    )
    replay_ttl_s: int = Field(
        86_400, ge=1, le=30 * 86_400, description="How long a decision is kept for replays of its request id."
    )
    replay_timeout_ms: int = Field(
        50, ge=1, le=10_000, description="Socket timeout of each retry-cache call; slower counts as down."
    )

    tls_cert_file: Path | None = Field(
        None, description="PEM certificate of the client-facing port; unset = plaintext."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key for FACEGATE_GATEWAY_TLS_CERT_FILE.")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle: when set, clients must present a certificate it signed (mTLS)."
    )
    allow_plaintext: bool = Field(
        False,
        description="Serve plaintext on a non-loopback address (only behind a TLS-terminating proxy); "
        "loopback is always allowed.",
    )

    @model_validator(mode="after")
    def _peers_valid(self) -> GatewaySettings:
        from gateway.peers import parse_targets

        parse_targets(self.peers)  # ValueError names the malformed entry
        if self.peer_port == 0:
            raise ValueError("PEER_PORT must be a fixed port (its peers dial it), or -1 for none")
        if self.peers and self.peer_port < 0:
            raise ValueError("PEERS needs PEER_PORT: the other replicas reach this one there")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both TLS_CERT_FILE and TLS_KEY_FILE, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")
        return self
