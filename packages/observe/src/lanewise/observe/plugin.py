"""Hook implementations of lanewise-observe (entry point ``observe`` in group ``lanewise``).

The entry point loads :data:`plugin`, an :class:`ObservePlugin`. Tests and
embedding applications register their own instance (with an in-memory span
exporter, say) and leave the entry point out of ``LANEWISE_PLUGINS``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from lanewise.core.context import current_request
from lanewise.core.factory import Components
from lanewise.core.hookspecs import hookimpl
from lanewise.core.settings import Settings
from lanewise.core.types import StageTiming, UsageEvent
from lanewise.observe import metrics
from lanewise.observe.record import RECORD
from lanewise.observe.settings import ObserveSettings, observe_settings
from lanewise.observe.telemetry import Telemetry, count_drop
from litestar import Response, get
from litestar.config.app import AppConfig

log = logging.getLogger("lanewise.observe")


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint() -> Response[bytes]:
    """Prometheus text exposition (every worker process's values in multiprocess mode)."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


class ObservePlugin:
    def __init__(self, *, span_exporter: Any = None) -> None:
        self.span_exporter = span_exporter
        self.telemetry: Telemetry | None = None

    @hookimpl
    def lanewise_register_settings(self, register: Any) -> None:
        register("observe", ObserveSettings, description="logs, metrics, traces, usage table")

    @hookimpl
    def lanewise_configure_gateway(
        self, app_config: AppConfig, settings: Settings, components: Components
    ) -> None:
        from lanewise.observe.middleware import unrouted_hook
        from lanewise.observe.usage.api import make_usage_route

        observe = observe_settings(settings)
        if self.telemetry is not None:
            self.telemetry.close()  # a second app in this process (tests) replaces the first
        telemetry = self.telemetry = Telemetry(
            settings, observe, span_exporter=self.span_exporter, components=components
        )
        components.request_observers.append(telemetry)
        app_config.after_exception.append(unrouted_hook(telemetry))
        if observe.metrics:
            app_config.route_handlers.append(metrics_endpoint)
        usage_store = telemetry.writer or telemetry.usage_reader
        if usage_store is not None:
            app_config.route_handlers.append(make_usage_route(usage_store))
        app_config.lifespan.append(telemetry.lifespan)

    @hookimpl
    def lanewise_on_usage(self, event: UsageEvent) -> None:
        context = current_request()
        entry = context.attributes.get(RECORD) if context is not None else None
        try:
            if entry is not None:  # the common case, inline: once per model call
                record = entry[1]
                record.usage_events.append(event)
                if record.awaiting_usage:
                    entry[0].usage_after_end(record, context)
            elif self.telemetry is not None:
                self.telemetry.on_usage(event)
        except Exception:
            count_drop("internal")
            log.warning("telemetry could not record usage", exc_info=True)

    @hookimpl
    def lanewise_on_stage(self, event: StageTiming) -> None:
        context = current_request()
        entry = context.attributes.get(RECORD) if context is not None else None
        try:
            if entry is not None:  # the common case, inline: several per request
                entry[1].stage_events.append(event)
            elif self.telemetry is not None:
                self.telemetry.on_stage(event)
        except Exception:
            count_drop("internal")
            log.warning("telemetry could not record a stage", exc_info=True)

    @hookimpl
    def lanewise_on_demo(self, components: Any, docs_dir: Any, console: Any) -> None:
        """The demo prints its answer on the terminal: request logs go to a file instead."""
        from lanewise.observe.logs import configure_logging

        settings: Settings = components.settings
        observe = observe_settings(settings)
        if observe.log_file is not None:
            return
        path = Path(settings.data_dir) / "logs" / "demo.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        demo = observe.model_copy(update={"log_file": path, "log_format": "json"})
        configure_logging(demo, on_drop=lambda: count_drop("logs"))
        console.print(f"request summaries (observe lane): {path}")

    @hookimpl(trylast=True)
    def lanewise_configure_cli(self, cli: click.Group) -> None:
        from lanewise.observe.cli import usage
        from lanewise.observe.multiproc import wrap_serve

        cli.add_command(usage)
        serve = cli.commands.get("serve")
        if serve is not None:
            wrap_serve(serve)

    @hookimpl
    def lanewise_configure_celery(self, celery_app: Any, settings: Settings) -> None:
        from lanewise.observe.celery import instrument_celery

        instrument_celery(celery_app, observe_settings(settings))


plugin = ObservePlugin()
