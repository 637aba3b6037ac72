"""The ingest lane's configuration section, ``[ingest]`` in ``lanewise.toml``.

Registered through ``lanewise_register_settings``: core validates the table
(unknown keys fail at start-up, naming the allowed ones) and builds the
``chunker`` component it declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from lanewise.core.settings import ComponentConfig, Section, Settings
from pydantic import Field


class IngestSettings(Section):
    chunker: ComponentConfig | None = None
    queue: Literal["embedded", "celery"] = Field(
        "embedded",
        description="embedded: jobs run in this process; celery: sent to `lanewise worker`s",
    )
    broker_url: str | None = Field(
        None, description="Celery broker (Redis); defaults to the top-level redis_url"
    )
    allowed_root: Path | None = Field(
        None,
        description="server-side paths POST /v1/ingest may name must lie inside it; "
        "None refuses every server-side path",
    )
    max_upload_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="an upload request above it gets 413 before its body is read",
    )
    max_queue_depth: int = Field(
        10_000, ge=1, description="new jobs get 429 while more tasks than this are queued"
    )
    embed_batch: int = Field(64, ge=1, description="chunks per embedding call")
    inline_embed: bool = Field(
        True,
        description="a worker that consumes both queues embeds a document's only batch "
        "inside its parse task instead of sending it to the embed queue",
    )
    max_retries: int = Field(5, ge=0, description="retries of a transient failure, per task")
    retry_backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles, jittered")
    retry_backoff_max_s: float = Field(60.0, gt=0)
    task_time_limit_s: float = Field(600.0, gt=0, description="hard limit of one task")
    visibility_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="Redis redelivers an unacknowledged task after it; must be >= 2x the "
        "task time limit (celery#5508)",
    )
    worker_max_memory_mb: int = Field(
        2048,
        ge=64,
        description="a worker child above this RSS is replaced after its task (MiniLM "
        "embedding batches take about 1.2 GiB; below that the embed pool would reload "
        "the model after every task)",
    )
    worker_max_tasks_per_child: int = Field(1000, ge=1)
    loaders: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='options per loader, e.g. [ingest.loaders.jsonl] text_field = "body"',
    )
    read_block_bytes: int = Field(
        256 * 1024, ge=4096, description="large text files are read and chunked in blocks"
    )


def ingest_settings(settings: Settings) -> IngestSettings:
    """The ``[ingest]`` section (its defaults when the lane's section is not registered)."""
    return settings.section(IngestSettings)
