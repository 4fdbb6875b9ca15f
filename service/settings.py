"""Service configuration: one pydantic-settings class, environment prefix ``MLP_``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    return os.cpu_count() or 1


# Every knob of the service, read once and never changed (frozen); tests build their own instance and pass it
# to create_app.
class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLP_", extra="ignore", populate_by_name=True, frozen=True)

    data_dir: Path = Field(Path("./data"), validate_default=True,
                           description="Root for the SQLite database and artifacts.")
    database_url: str | None = Field(None, validate_default=True,
                                     description="SQLAlchemy URL; default sqlite:///{data_dir}/mlp.db.")
    storage_url: str | None = Field(None, validate_default=True,
                                    description="Artifact directory; default {data_dir}/artifacts.")
    broker_url: str | None = Field(None, description="Celery broker (redis://...); unset = embedded workers.")
    storage_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("MLP_STORAGE_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        description="Endpoint of an S3-compatible store (MinIO, moto) for MLP_STORAGE_URL=s3://...")
    workers: int = Field(default_factory=_default_workers, ge=0, description="Embedded worker processes.")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    tmp_sweep_age_seconds: float | None = Field(None, ge=0, description="Start-up sweep of temporary files: "
                                                "those older than this; default all (embedded), 1 h (scale-out).")
    predict_memory_bytes: int = Field(64 * 2**20, ge=1, description="Activation memory of one predict chunk: "
                                      "rows are predicted in chunks that stay within it.")
    max_row_activations: int = Field(262_144, ge=1, description="Most activation values one row may need "
                                     "(input width plus every layer's units); a wider network is a 422.")
    max_job_attempts: int = Field(3, ge=1, description="Embedded: a job whose worker died is resumed by the "
                                  "replacement worker until it has been tried this many times, then fails.")
    body_read_timeout_seconds: float = Field(30.0, gt=0, description="A request body that sends no bytes for "
                                             "this long is answered 408.")
    body_min_rate_bytes_per_second: float = Field(500.0, gt=0, description="A request body must arrive within "
                                                  "MLP_BODY_READ_TIMEOUT_SECONDS plus one second per this many "
                                                  "bytes received (408 beyond).")
    header_read_timeout_seconds: float = Field(10.0, gt=0, description="A request head (request line and "
                                               "headers) not complete within this long is answered 408.")
    prestart_workers: bool = Field(True, description="Embedded: spawn and warm the workers at start-up (/readyz "
                                   "503 until warm); false spawns them with the first job.")
    max_connections: int = Field(1024, ge=1, description="Open connections of `serve`; requests on more are "
                                 "answered 503 (GET /healthz still answered).")
    max_streams: int = Field(256, ge=1, description="Open /v1/jobs/{id}/events streams per API process (429).")
    max_streams_per_tenant: int = Field(32, ge=1, description="Open event streams per tenant and process (429).")
    max_json_body_bytes: int = Field(1024 * 1024, ge=1, description="Body of POST /v1/networks, /v1/jobs (413).")
    max_params: int = Field(5_000_000, ge=1)
    max_epochs: int = Field(1000, ge=1)
    max_batch_size: int = Field(65536, ge=1)
    max_layers: int = Field(64, ge=1)
    max_columns: int = Field(10_000, ge=2, description="Columns of an uploaded table (422 above it).")
    model_cache_size: int = Field(16, ge=1, description="Trained models each API process keeps loaded (LRU).")
    api_keys_file: Path | None = None
    api_key_recheck_seconds: float = Field(1.0, ge=0, description="How stale a verified key may be (revocation).")
    # Per-tenant quotas (issue 6); None = unlimited. tenant_quotas overrides them per tenant, e.g.
    # MLP_TENANT_QUOTAS='{"alice": {"quota_max_jobs": 8}}'. Enforced by service/quotas.py.
    quota_max_jobs: int | None = Field(None, ge=1, description="Queued+running jobs per tenant (429).")
    quota_max_stored_bytes: int | None = Field(None, ge=1, description="Bytes of data sets per tenant (413).")
    quota_max_dataset_bytes: int | None = Field(None, ge=1, description="Bytes of one data set upload (413).")
    quota_max_params: int | None = Field(None, ge=1, description="Parameters of one network (413).")
    tenant_quotas: dict[str, dict[str, int | None]] = Field(default_factory=dict)

    # Workers (embedded and Celery): batch work runs below the API's priority.
    worker_nice: int = Field(10, ge=0, le=19, description="Niceness added to every training process.")
    checkpoint_seconds: float = Field(1.0, ge=0, description="A running job checkpoints its first epoch, then at "
                                      "most this often (0: every epoch); after a crash it resumes from the last "
                                      "checkpoint and trains the epochs since then again, bit for bit.")
    # Distributed executor leases (service/executor/celery.py); MLP_LEASE_SECONDS etc.
    lease_seconds: float = Field(15.0, gt=0, description="A running job whose lease is older is taken over.")
    lease_heartbeat_seconds: float = Field(3.0, gt=0, description="How often a training task renews its lease.")
    sweep_seconds: float = Field(5.0, gt=0, description="How often each worker looks for expired leases.")
    # Sweeps (service/sweeps/driver.py): every API process runs a driver; a DB lease gives each sweep to one.
    sweep_lease_seconds: float = Field(10.0, gt=0, description="A sweep whose driver's lease is older is taken "
                                                               "over by another API process.")
    sweep_poll_seconds: float = Field(0.2, gt=0, description="How often the sweep driver reads trial progress.")
    republish_seconds: float = Field(30.0, gt=0, description="A queued job this old with an empty broker queue "
                                                             "is published again.")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _resolve_data_dir(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @field_validator("database_url", mode="after")
    @classmethod
    def _default_database_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value or "data_dir" not in info.data:
            return value
        return f"sqlite:///{info.data['data_dir'] / 'mlp.db'}"

    @field_validator("storage_url", mode="after")
    @classmethod
    def _default_storage_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value or "data_dir" not in info.data:
            return value
        return str(info.data["data_dir"] / "artifacts")


# MLP_ variables that other parts of the project read, not the server: mlp_client and its commands (URL, API_KEY),
# the MNIST lab (MNIST_DIR), the container's HEALTHCHECK (HEALTHCHECK_URL), scripts/compose-scale-check.sh (PORT),
# the benchmarks' trial trace (TRACE_DIR) and the tests (UI_SCREENSHOTS, MLP_TEST_*)
CLIENT_VARIABLES = ("MLP_URL", "MLP_API_KEY", "MLP_MNIST_DIR", "MLP_HEALTHCHECK_URL", "MLP_PORT", "MLP_TRACE_DIR",
                    "MLP_UI_SCREENSHOTS")


def unknown_variables(environ: dict[str, str] | None = None) -> list[tuple[str, str | None]]:
    """The ``MLP_`` environment variables no setting reads (a typo, or a name from another tool's docs, is otherwise
    silently ignored: ``MLP_API_KEYS`` left a server open), each with the closest setting's variable or None."""
    import difflib

    environ = os.environ if environ is None else environ
    known = set(CLIENT_VARIABLES)
    for name, field in Settings.model_fields.items():
        known.add(f"MLP_{name.upper()}")
        alias = field.validation_alias
        known.update(a for a in getattr(alias, "choices", [alias]) if isinstance(a, str) and a.startswith("MLP_"))
    out = []
    for var in sorted(v for v in environ if v.upper().startswith("MLP_") and v.upper() not in known
                      and not v.upper().startswith("MLP_TEST_")):
        close = difflib.get_close_matches(var.upper(), sorted(known - set(CLIENT_VARIABLES)), n=1, cutoff=0.6)
        out.append((var, close[0] if close else None))
    return out


def warn_unknown_variables(log) -> None:
    """Log a warning for each ``MLP_`` variable no setting reads (at the start of ``serve`` and ``worker``)."""
    for var, close in unknown_variables():
        log.warning("%s is not a setting of mlp-service and is ignored%s", var,
                    f" (did you mean {close}?)" if close else "")

