"""Open Inference Protocol v2 (KServe / Triton / MLServer) REST endpoints under /v2."""
