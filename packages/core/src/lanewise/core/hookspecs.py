"""Hook specifications: the only way lanes reach each other.

Conventions (DESIGN.md §3): ``register_*`` hooks receive a ``register``
callback; ``configure_*`` hooks mutate the object passed in; ``resolve_*``
hooks are ``firstresult`` and return None to pass; ``on_*`` hooks are
notifications whose results are ignored. Hooks are always called with keyword
arguments, and a spec only ever gains arguments. Every hook here is documented
in ``docs/hooks.md`` and tested; ``tests/test_hook_docs.py`` enforces both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click
    from lanewise.core.container import Container
    from lanewise.core.protocols import Retriever
    from lanewise.core.registry import Register
    from lanewise.core.settings import Settings
    from lanewise.core.types import Principal, StageTiming, UsageEvent
    from litestar.config.app import AppConfig
    from rich.console import Console

PROJECT = "lanewise"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lanewise_register_backends(register: Register) -> None:
    """Register chat backend factories: ``register("triton", factory, description=...)``.

    Every ``register_*`` factory (except health checks) is called as
    ``factory(config, settings, container)``: ``config`` is the
    :class:`~lanewise.core.settings.ComponentConfig` that names it (here the
    model's ``[models.<name>]`` table; ``config.options`` holds its other keys),
    and ``container`` gives access to other built components (e.g.
    ``container.embedder()``). It returns a :class:`~lanewise.core.protocols.ChatBackend`.
    """


@hookspec
def lanewise_register_embedders(register: Register) -> None:
    """Register embedder factories (``[retrieval.embedder] kind = ...``)."""


@hookspec
def lanewise_register_vector_stores(register: Register) -> None:
    """Register vector store factories (``[retrieval.vector_store] kind = ...``)."""


@hookspec
def lanewise_register_loaders(register: Register) -> None:
    """Register document loader factories, chosen by file suffix at ingest time."""


@hookspec
def lanewise_register_chunkers(register: Register) -> None:
    """Register chunker factories (``[ingest.chunker] kind = ...``)."""


@hookspec
def lanewise_register_rerankers(register: Register) -> None:
    """Register reranker factories (``[retrieval.reranker] kind = ...``)."""


@hookspec
def lanewise_register_evaluators(register: Register) -> None:
    """Register evaluator factories run by the observe lane over sampled traffic."""


@hookspec
def lanewise_register_health_checks(register: Register, container: Container) -> None:
    """Register readiness checks that ``/readyz`` and ``lanewise doctor`` run.

    A factory is called with no arguments and returns a
    :class:`~lanewise.core.protocols.HealthCheck`.
    """


@hookspec(firstresult=True)
def lanewise_resolve_retriever(container: Container) -> Retriever | None:
    """Return the retriever the pipeline's retrieve stage uses, or None to pass."""


@hookspec(firstresult=True)
def lanewise_resolve_principal(headers: Mapping[str, str], settings: Settings) -> Principal | None:
    """Authenticate a ``/v1`` request from its headers; return None to pass.

    Raise :class:`~lanewise.core.errors.Unauthorized` to reject. The core
    implementation (``trylast``) checks ``gateway.api_keys`` (SHA-256 at rest).
    """


@hookspec
def lanewise_configure_gateway(
    app_config: AppConfig, settings: Settings, container: Container
) -> None:
    """Add routes, middleware, dependencies or lifespan hooks to the gateway's AppConfig."""


@hookspec
def lanewise_configure_celery(celery_app: Any, settings: Settings) -> None:
    """Add queues, routes or tasks to the ingest lane's Celery app."""


@hookspec
def lanewise_configure_cli(cli: click.Group) -> None:
    """Add commands to the ``lanewise`` command group."""


@hookspec
def lanewise_on_demo(container: Container, docs_dir: Path, console: Console) -> None:
    """Called by ``lanewise demo`` before it asks its question: prepare data (index docs)."""


@hookspec
def lanewise_on_usage(event: UsageEvent) -> None:
    """Called once per model call with its token usage and latency."""


@hookspec
def lanewise_on_stage(event: StageTiming) -> None:
    """Called once per pipeline stage (retrieve, prompt, generate, ...) with its timing."""
