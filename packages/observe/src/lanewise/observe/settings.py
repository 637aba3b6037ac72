"""The ``[observe]`` settings section and the one place that reads it.

Registered through ``lanewise_register_settings``: the ``[observe]`` table of
``lanewise.toml`` and ``LANEWISE_OBSERVE__*`` environment variables set it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from lanewise.core.errors import ConfigError
from lanewise.core.settings import Section, Settings
from pydantic import Field, ValidationError

ENV_PREFIX = "LANEWISE_OBSERVE__"


class ObserveSettings(Section):
    """Telemetry of the gateway and workers: logs, metrics, traces, usage."""

    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a TTY, JSON lines otherwise"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: Path | None = Field(None, description="write log lines here instead of stderr")
    log_buffer: int = Field(10_000, ge=1, description="log lines queued for the writer")
    summaries: bool = Field(True, description="one request.summary line per /v1 request")
    metrics: bool = Field(True, description="Prometheus metrics and /metrics")
    metrics_user_labels: bool = Field(False, description="add a user label to token counters")
    metrics_user_cap: int = Field(
        100, ge=1, description="distinct users labelled per process; the rest count as 'other'"
    )
    metrics_tenant_cap: int = Field(
        1_000, ge=1, description="distinct tenants labelled per process; the rest count as 'other'"
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Celery workers serve /metrics on this port"
    )
    traces: bool = Field(True, description="OpenTelemetry spans when an exporter is configured")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint (needs lanewise-observe[otlp]); unset: no export"
    )
    span_exporter: str | None = Field(
        None, description="'module:callable' returning an OpenTelemetry SpanExporter"
    )
    spans_file: Path | None = Field(None, description="write spans here as JSON lines")
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    usage_store: bool = Field(True, description="write usage rows to SQL for /v1/usage")
    usage_database_url: str | None = Field(
        None, description="defaults to database_url, else SQLite under data_dir"
    )
    usage_buffer: int = Field(10_000, ge=1, description="usage rows queued for the writer")
    stale_index_after_s: float = Field(
        300.0, gt=0, description="answers from an index older than the newest by this long"
    )
    anomaly_factor: float = Field(
        3.0, gt=1.0, description="token anomaly: mean >= factor x baseline"
    )
    anomaly_window: int = Field(20, ge=2, description="requests in the recent window")
    anomaly_baseline_min: int = Field(50, ge=2, description="requests before a baseline counts")
    sidecar: bool | None = Field(
        None,
        description="process telemetry in a child process; unset: on under `lanewise serve`",
    )
    sidecar_buffer_bytes: int = Field(
        4 << 20, ge=4096, description="encoded records waiting for the sidecar; past it dropped"
    )
    sidecar_cpus: list[int] | None = Field(
        None, description="CPU cores the sidecar may run on (default: the gateway's)"
    )
    sidecar_nice: int = Field(
        5, ge=0, le=19, description="added to the sidecar's nice value: serving gets the CPU first"
    )


def observe_settings(settings: Settings) -> ObserveSettings:
    """The ``[observe]`` section of ``settings``.

    When the section is not registered (the observe entry point left out of
    ``plugins`` while an :class:`ObservePlugin` is passed in directly), the
    ``LANEWISE_OBSERVE__*`` environment variables still configure it.
    """
    if any(spec.model is ObserveSettings for spec in settings.lane_sections.values()):
        return settings.section(ObserveSettings)
    values: dict[str, Any] = {
        key.removeprefix(ENV_PREFIX).lower(): value
        for key, value in os.environ.items()
        if key.startswith(ENV_PREFIX)
    }
    try:
        return ObserveSettings(**values)
    except ValidationError as exc:
        bad = "; ".join(f"observe.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {bad}") from None
