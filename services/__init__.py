"""facegate back-end services; each sub-package is one deployable gRPC server."""
