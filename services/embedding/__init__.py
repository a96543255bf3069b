"""Embedding service: FaceNet templates from aligned crops, batched, cached in Redis."""
