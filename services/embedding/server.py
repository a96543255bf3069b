"""gRPC servicer for the embedding service: validate, look up the cache, batch, embed, store.

The cache sits in front of the batcher so repeated crops (a traveller retrying, the document
portrait embedded by several checks) skip the model; misses from all concurrent requests are
merged into shared model calls.
"""

from __future__ import annotations

import logging
import threading

import grpc
import numpy as np

from facegate.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services.embedding import metrics
from services.embedding.batcher import DynamicBatcher
from services.embedding.cache import EmbeddingCache, crop_digest
from services.embedding.config import EmbeddingSettings
from services.embedding.crops import crops_from_request
from services.embedding.model import EmbeddingModel
from services.runtime.config import RuntimeSettings
from services.runtime.errors import FailedPrecondition, Unavailable
from services.runtime.model_spec import ModelSpec
from services.runtime.redis_client import tls_options
from services.runtime.server import run_service
from services.runtime.tf_threads import configure_threads

log = logging.getLogger("facegate.embedding")

#: A model call should never take this long; a stuck one must not hold the RPC thread forever.
EMBED_TIMEOUT_S = 120.0


class EmbeddingService(embedding_pb2_grpc.EmbeddingServiceServicer):
    service_names = ("facegate.v1.EmbeddingService",)

    def __init__(
        self,
        settings: EmbeddingSettings,
        runtime: RuntimeSettings,
        *,
        model: EmbeddingModel | None = None,
    ) -> None:
        """``model`` lets tests and the evaluation share one loaded model between servicers."""
        self.settings = settings
        self.runtime = runtime
        # checked here, before minutes of model loading: a refused transport stops the start at once
        self._redis_tls = tls_options(settings.redis_url, runtime, "FACEGATE_EMBEDDING_REDIS_URL")
        self.model = model
        self._owns_model = model is None
        self.batcher: DynamicBatcher | None = None
        self.cache: EmbeddingCache | None = None
        self._ready = threading.Event()

    def register(self, server: grpc.Server) -> None:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(self, server)

    @property
    def spec(self) -> ModelSpec:
        """The loaded model's: the runtime (int8 on a CPU, float32 on a GPU) decides the version."""
        if self.model is None:
            raise Unavailable("embedding model is still loading")
        return self.model.spec

    @property
    def flip_fusion(self) -> bool:
        return self.model.flip_fusion if self.model is not None else self.settings.flip_fusion

    def warmup(self) -> None:
        s = self.settings
        if self.model is None:
            configure_threads(s.tf_intra_op_threads, s.tf_inter_op_threads)
            self.model = EmbeddingModel(
                s.models_dir,
                flip_fusion=s.flip_fusion,
                device=s.device,
                runtime=s.runtime,
                threads=s.tf_intra_op_threads,
            )
        sizes = (1, s.max_batch) if s.batching else (1,)
        warm_s = self.model.warmup(sizes)
        metrics.DEVICE.labels(self.model.device).set(1)
        metrics.FLIP_FUSION.set(1 if self.model.flip_fusion else 0)
        if s.batching:
            self.batcher = DynamicBatcher(
                self.model.embed,
                dimension=self.spec.dimension,
                max_batch=s.max_batch,
                max_wait_s=s.max_wait_ms / 1000.0,
            )
        flip = "flip" if self.model.flip_fusion else "plain"
        self.cache = EmbeddingCache(
            s.redis_url,
            namespace=f"{s.cache_prefix}:{self.spec.model_version[:16]}:{flip}",
            dimension=self.spec.dimension,
            ttl_s=s.cache_ttl_s,
            timeout_s=s.cache_timeout_ms / 1000.0,
            retry_s=s.cache_retry_s,
            tls=self._redis_tls,
        )
        self._ready.set()
        log.info(
            "embedding ready",
            extra={
                "device": self.model.device,
                "runtime": self.model.runtime,
                "warmup_s": round(warm_s, 2),
                "batching": s.batching,
                "cache": self.cache.enabled,
                "flip_fusion": self.model.flip_fusion,
            },
        )

    def close(self) -> None:
        self._ready.clear()
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        if self.cache is not None:
            self.cache.close()

    def model_spec(self) -> common_pb2.ModelSpec:
        spec = self.spec
        return common_pb2.ModelSpec(
            model_id=spec.model_id,
            model_version=spec.model_version,
            input_size=spec.input_size,
            margin=spec.margin,
            normalization=spec.normalization,
            dimension=spec.dimension,
            metric=spec.metric,
            flip_fusion=self.flip_fusion,
            device=self.model.device if self.model is not None else "",
        )

    def GetModelInfo(
        self, request: embedding_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> common_pb2.ModelSpec:
        if not self._ready.is_set():
            raise Unavailable("embedding model is still loading")
        return self.model_spec()

    def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        if not self._ready.is_set() or self.model is None or self.cache is None:
            raise Unavailable("embedding model is still loading")
        if request.model_version and request.model_version != self.spec.model_version:
            raise FailedPrecondition(
                f"model version {request.model_version[:12]}… is not loaded; this service runs "
                f"{self.spec.model_id} version {self.spec.model_version[:12]}…"
            )
        crops = crops_from_request(request.faces, self.spec, self.settings.max_faces_per_request)
        rows, hits = self.embed_crops(crops)
        version = self.spec.model_version
        return embedding_pb2.EmbedResponse(
            embeddings=[
                common_pb2.Embedding(values=row.tolist(), model_id=self.spec.model_id, model_version=version)
                for row in rows
            ],
            cache_hits=hits,
        )

    def embed_crops(self, crops: np.ndarray) -> tuple[np.ndarray, list[bool]]:
        """Embeddings for validated crops, from the cache where possible; the rest from the model."""
        assert self.model is not None and self.cache is not None
        digests = [crop_digest(c) for c in crops] if self.cache.enabled else []
        cached = self.cache.get_many(digests) if digests else [None] * len(crops)
        hits = [row is not None for row in cached]
        missing = [i for i, hit in enumerate(hits) if not hit]
        out = np.empty((len(crops), self.spec.dimension), np.float32)
        for i, row in enumerate(cached):
            if row is not None:
                out[i] = row
        if missing:
            todo = crops[missing]
            fresh = (
                self.batcher.embed(todo, timeout=EMBED_TIMEOUT_S)
                if self.batcher is not None
                else self.model.embed(todo)
            )
            out[missing] = fresh
            if digests:
                self.cache.put_many([digests[i] for i in missing], fresh)
        metrics.FACES.labels("cache").inc(len(crops) - len(missing))
        metrics.FACES.labels("model").inc(len(missing))
        return out, hits


def main() -> None:
    run_service("embedding", EmbeddingSettings, EmbeddingService)
