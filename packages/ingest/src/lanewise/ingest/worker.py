"""``lanewise worker``: check the configuration, then run a Celery worker."""

from __future__ import annotations

import asyncio
from typing import Any

from lanewise.core.commands import single_process_components
from lanewise.core.errors import ConfigError
from lanewise.core.settings import Settings
from lanewise.ingest.celery_app import QUEUES, create_celery_app
from lanewise.ingest.wiring import open_components


def refuse_single_process_store(settings: Settings) -> None:
    """Workers are separate processes: a store one process owns cannot take their writes."""
    components, close = open_components(settings)
    try:
        components.vector_store()
        single = single_process_components(components)
    finally:
        asyncio.run(close())
    if single:
        raise ConfigError(
            f"{', '.join(single)} can be open in one process only, so `lanewise worker` cannot "
            'write to it: use a server store (retrieval.vector_store kind = "pgvector" or '
            '"weaviate") for workers, or run ingestion in process with ingest.queue = '
            '"embedded" (`lanewise ingest PATH` without workers)'
        )


def run_worker(
    settings: Settings,
    *,
    queues: str,
    concurrency: int,
    pool: str,
    loglevel: str = "INFO",
    hostname: str | None = None,
) -> None:
    from celery import signals
    from lanewise.core.plugins import get_plugin_manager
    from lanewise.ingest.celery_app import (
        consume,
        init_worker_process,
        shutdown_worker_process,
    )

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if unknown or not wanted:
        raise ConfigError(
            f"--queues {queues!r}: unknown queue(s) {', '.join(unknown) or '(none given)'}; "
            f"the ingest lane's queues are {', '.join(QUEUES)}"
        )
    refuse_single_process_store(settings)
    consume(wanted)
    app = create_celery_app(settings, get_plugin_manager(settings.plugins))
    signals.worker_process_init.connect(init_worker_process, weak=False)
    signals.worker_process_shutdown.connect(shutdown_worker_process, weak=False)
    argv: list[Any] = [
        "worker",
        f"--queues={','.join(wanted)}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv=argv)
