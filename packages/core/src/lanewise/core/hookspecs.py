"""Hook specifications: the only way lanes reach each other.

Conventions (docs/hooks.md, docs/architecture.md): ``register_*`` hooks receive a ``register``
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
    from lanewise.core.factory import Components
    from lanewise.core.prompts import PromptTemplate
    from lanewise.core.protocols import Retriever
    from lanewise.core.registry import Register
    from lanewise.core.settings import SectionRegister, Settings
    from lanewise.core.types import (
        ChatRequest,
        Principal,
        StageTiming,
        StateSample,
        UsageEvent,
    )
    from litestar.config.app import AppConfig
    from rich.console import Console

PROJECT = "lanewise"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lanewise_register_settings(register: SectionRegister) -> None:
    """Register a lane's settings section: ``register("governance", GovernanceSettings)``.

    The model subclasses :class:`~lanewise.core.settings.Section`; core validates
    ``[governance]`` with it at start-up (one ConfigError naming every bad key) and
    lanes read it with ``settings.section(GovernanceSettings)``. ``components=
    {"embedder": "embedder"}`` says which fields name components core builds.
    """


@hookspec
def lanewise_register_backends(register: Register) -> None:
    """Register chat backend factories: ``register("triton", factory, description=...)``.

    Every ``register_*`` factory is called as ``factory(ctx)`` with one
    :class:`~lanewise.core.factory.FactoryContext`: ``ctx.key`` (here
    ``models.<name>``), ``ctx.options`` (the table's other keys; validate with
    ``ctx.read(allowed)`` or ``ctx.parse(Model)``), ``ctx.settings``, typed
    access to other components (``ctx.components.embedder()``) and
    ``ctx.on_close(...)``. It returns a :class:`~lanewise.core.protocols.ChatBackend`.
    """


@hookspec
def lanewise_register_embedders(register: Register) -> None:
    """Register embedder factories (the retrieval lane's ``[retrieval.embedder] kind = ...``)."""


@hookspec
def lanewise_register_vector_stores(register: Register) -> None:
    """Register vector store factories (``[retrieval.vector_store] kind = ...``)."""


@hookspec
def lanewise_register_loaders(register: Register) -> None:
    """Register document loader factories, chosen by file suffix at ingest time."""


@hookspec
def lanewise_register_chunkers(register: Register) -> None:
    """Register chunker factories (the ingest lane's ``[ingest.chunker] kind = ...``)."""


@hookspec
def lanewise_register_rerankers(register: Register) -> None:
    """Register reranker factories (``[retrieval.reranker] kind = ...``)."""


@hookspec
def lanewise_register_evaluators(register: Register) -> None:
    """Register evaluator factories run by the observe lane over sampled traffic."""


@hookspec
def lanewise_register_health_checks(register: Register, components: Components) -> None:
    """Register readiness checks that ``/readyz`` and ``lanewise doctor`` run.

    The hook gets the process's components; a factory is called with no
    arguments and returns a :class:`~lanewise.core.protocols.HealthCheck`.
    """


@hookspec
def lanewise_register_guards(register: Register) -> None:
    """Register model-call guards: ``register("budgets", factory, order=200)``.

    ``factory(ctx)`` returns a :class:`~lanewise.core.guards.ModelCallGuard` (or
    None when its settings turn it off). Every model call passes through the
    guards: ``admit`` in ascending ``order`` before the call (raise a
    LanewiseError to refuse), ``on_chunk`` for each streamed chunk (return a
    ``StreamStop`` to end the stream), ``settle`` exactly once afterwards, in
    reverse order.
    """


@hookspec(firstresult=True)
def lanewise_resolve_retriever(components: Components) -> Retriever | None:
    """Return the retriever the pipeline's retrieve stage uses, or None to pass."""


@hookspec(firstresult=True)
def lanewise_resolve_prompt(name: str, request: ChatRequest) -> PromptTemplate | None:
    """Return the template for prompt ``name`` (``"rag"``) for this request, or None to pass.

    Core's own implementation (``trylast``) returns the built-in template. The
    resolved name and version travel with the request to stage and usage events
    and to the response.
    """


@hookspec(firstresult=True)
def lanewise_resolve_principal(headers: Mapping[str, str], settings: Settings) -> Principal | None:
    """Authenticate a ``/v1`` request from its headers; return None to pass.

    Raise :class:`~lanewise.core.errors.Unauthorized` to reject. The core
    implementation (``trylast``) checks ``gateway.api_keys`` (SHA-256 at rest).
    """


@hookspec
def lanewise_configure_gateway(
    app_config: AppConfig, settings: Settings, components: Components
) -> None:
    """Add routes, middleware, dependencies or lifespan hooks to the gateway's AppConfig."""


@hookspec
def lanewise_configure_celery(celery_app: Any, settings: Settings) -> None:
    """Add queues, routes or tasks to the ingest lane's Celery app."""


@hookspec
def lanewise_configure_cli(cli: click.Group) -> None:
    """Add commands to the ``lanewise`` command group."""


@hookspec
def lanewise_on_demo(components: Components, docs_dir: Path, console: Console) -> None:
    """Called by ``lanewise demo`` before it asks its question: prepare data (index docs)."""


@hookspec
def lanewise_on_usage(event: UsageEvent) -> None:
    """Called once per model call with its token usage and latency."""


@hookspec
def lanewise_on_stage(event: StageTiming) -> None:
    """Called once per pipeline stage (retrieve, prompt, generate, ...) with its timing."""


@hookspec
def lanewise_collect_state(components: Components) -> list[StateSample]:
    """Report the lane's live state (breakers, in-flight calls, queue depths, refusal counts).

    Called off the request path: by a telemetry lane (observe) from a background thread
    of each gateway process, about once a second; the results of every plugin are
    concatenated. Read what the lane already keeps (no I/O on the event loop, nothing
    built on demand); a slow answer only delays the next collection. Return ``[]`` when
    there is nothing to report; do not raise.
    """
    return []
