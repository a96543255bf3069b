"""Watchlist service: subjects, templates and 1:N search on Milvus."""
