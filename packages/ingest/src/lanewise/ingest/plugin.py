"""Hook implementations of lanewise-ingest (entry point group `lanewise`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from lanewise.core.factory import Components
from lanewise.core.hookspecs import hookimpl
from lanewise.core.registry import Register
from lanewise.core.settings import SectionRegister, Settings
from lanewise.core.types import StateSample
from lanewise.ingest import factories
from lanewise.ingest.settings import IngestSettings, ingest_settings
from rich.console import Console


@hookimpl
def lanewise_register_settings(register: SectionRegister) -> None:
    register(
        "ingest",
        IngestSettings,
        description="loaders, chunker, executor (embedded or Celery), limits and retries",
        components={"chunker": "chunker"},
    )


@hookimpl
def lanewise_register_loaders(register: Register) -> None:
    register("text", factories.build_text_loader, description="plain text, read in blocks")
    register("markdown", factories.build_markdown_loader, description="Markdown by heading")
    register("html", factories.build_html_loader, description="HTML text (selectolax) by heading")
    register("pdf", factories.build_pdf_loader, description="PDF text per page (pypdf)")
    register(
        "jsonl",
        factories.build_jsonl_loader,
        description="JSON Lines / JSON: text_field is the text, other fields metadata",
    )


@hookimpl
def lanewise_register_chunkers(register: Register) -> None:
    register(
        "tokens",
        factories.build_token_chunker,
        description="token-aware recursive splitter (size/overlap in the embedder's tokens)",
        default=True,
    )


@hookimpl
def lanewise_register_embedders(register: Register) -> None:
    register(
        "noop",
        factories.build_noop_embedder,
        description="no model, a vector per text from its hash: measures the pipeline's own cost",
    )


@hookimpl
def lanewise_register_health_checks(register: Register, components: Components) -> None:
    settings = components.settings
    if ingest_settings(settings).queue != "celery":
        return  # the embedded executor needs nothing outside this process
    from lanewise.ingest.health import BrokerHealth

    register(
        "ingest-broker",
        lambda: BrokerHealth(settings),
        description="the Redis of the ingest queues and job state answers (Celery mode)",
    )


@hookimpl
def lanewise_configure_gateway(app_config: Any, settings: Settings, components: Components) -> None:
    from lanewise.ingest.api import configure

    configure(app_config, settings, components)


@hookimpl
def lanewise_collect_state(components: Components) -> list[StateSample]:
    from lanewise.ingest.queue_state import queue_state

    return queue_state(components)


@hookimpl
def lanewise_configure_cli(cli: click.Group) -> None:
    from lanewise.ingest.cli import ingest_command, worker_command

    cli.add_command(ingest_command)
    cli.add_command(worker_command)


@hookimpl
def lanewise_on_demo(components: Components, docs_dir: Path, console: Console) -> None:
    from lanewise.ingest.demo import on_demo

    on_demo(components, docs_dir, console)
