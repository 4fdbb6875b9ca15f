"""Training jobs: create, watch, cancel; their lifecycle is written by the executor's workers."""
