"""Dependency-injector containers: configuration names it, plugins supply it.

The plugin manager provides factories (``register_*`` hooks); the container
decides what to build and shares one instance of each per process.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pluggy
from dependency_injector import containers, providers
from lanewise.core.errors import ConfigError
from lanewise.core.pipeline import Pipeline
from lanewise.core.plugins import collect
from lanewise.core.protocols import ChatBackend, HealthCheck, Retriever
from lanewise.core.registry import Register
from lanewise.core.settings import ComponentConfig, Settings


def build_component(
    registry: Register,
    spec: ComponentConfig | None,
    settings: Settings,
    key: str,
    container: Any = None,
) -> Any | None:
    """Build what ``spec`` names; with no spec, the registry's default (if any)."""
    if spec is None:
        defaults = registry.defaults()
        if len(defaults) > 1:
            raise ConfigError(
                f"{key}: several plugins mark a default {registry.kind} "
                f"({', '.join(defaults)}); choose one with {key}.kind"
            )
        if not defaults:
            return None
        spec = ComponentConfig(kind=defaults[0])
    factory = registry.get(spec.kind, key=f"{key}.kind")
    try:
        built = factory.build(spec, settings, container)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{key} ({spec.kind}): {exc}") from exc
    if container is not None and hasattr(built, "aclose"):
        container.closeables().append(built)
    return built


def build_backends(
    registry: Register, settings: Settings, container: Any
) -> dict[str, ChatBackend]:
    """One backend per configured model; with none configured, every default backend."""
    specs = dict(settings.models) or {
        name: ComponentConfig(kind=name) for name in registry.defaults()
    }
    built = {}
    for model, spec in specs.items():
        backend = build_component(registry, spec, settings, f"models.{model}", container)
        if not isinstance(backend, ChatBackend):
            raise ConfigError(f"models.{model}: factory {spec.kind!r} did not return a ChatBackend")
        built[model] = backend
    if settings.default_model is not None and settings.default_model not in built:
        raise ConfigError(
            f"default_model = {settings.default_model!r} is not a configured model; "
            f"allowed: {', '.join(sorted(built)) or 'none'}"
        )
    return built


def build_health_checks(pm: pluggy.PluginManager, container: Any) -> list[HealthCheck]:
    registry = collect(pm, "health check", container=container)
    return [factory.build() for factory in registry.factories.values()]


def resolve_retriever(pm: pluggy.PluginManager, container: Any) -> Retriever | None:
    result: Retriever | None = pm.hook.lanewise_resolve_retriever(container=container)
    return result


class Container(containers.DeclarativeContainer):
    __self__ = providers.Self()
    settings = providers.Dependency(instance_of=Settings)
    plugin_manager = providers.Dependency(instance_of=pluggy.PluginManager)
    closeables: providers.Singleton[list[Any]] = providers.Singleton(list)

    backend_registry = providers.Singleton(collect, plugin_manager, "backend")
    embedder_registry = providers.Singleton(collect, plugin_manager, "embedder")
    vector_store_registry = providers.Singleton(collect, plugin_manager, "vector store")
    reranker_registry = providers.Singleton(collect, plugin_manager, "reranker")
    loader_registry = providers.Singleton(collect, plugin_manager, "loader")
    chunker_registry = providers.Singleton(collect, plugin_manager, "chunker")
    evaluator_registry = providers.Singleton(collect, plugin_manager, "evaluator")

    backends = providers.Singleton(build_backends, backend_registry, settings, __self__)
    embedder = providers.Singleton(
        build_component,
        embedder_registry,
        settings.provided.retrieval.embedder,
        settings,
        "retrieval.embedder",
        __self__,
    )
    vector_store = providers.Singleton(
        build_component,
        vector_store_registry,
        settings.provided.retrieval.vector_store,
        settings,
        "retrieval.vector_store",
        __self__,
    )
    reranker = providers.Singleton(
        build_component,
        reranker_registry,
        settings.provided.retrieval.reranker,
        settings,
        "retrieval.reranker",
        __self__,
    )
    chunker = providers.Singleton(
        build_component,
        chunker_registry,
        settings.provided.ingest.chunker,
        settings,
        "ingest.chunker",
        __self__,
    )
    retriever = providers.Singleton(resolve_retriever, plugin_manager, __self__)
    health_checks = providers.Singleton(build_health_checks, plugin_manager, __self__)
    pipeline = providers.Singleton(
        Pipeline,
        backends=backends,
        retriever=retriever,
        plugin_manager=plugin_manager,
        settings=settings,
    )


def build_container(settings: Settings, plugin_manager: pluggy.PluginManager) -> Any:
    """A wired container; building the pipeline here makes bad config fail at start-up."""
    container = Container(settings=settings, plugin_manager=plugin_manager)
    try:
        check_component_kinds(container, settings)
        container.pipeline()
    except BaseException:
        # A later component failed: release what earlier ones opened (files, locks).
        # A thread with its own loop works whether or not the caller runs a loop.
        closer = threading.Thread(target=asyncio.run, args=(close_container(container),))
        closer.start()
        closer.join()
        raise
    return container


def check_component_kinds(container: Any, settings: Settings) -> None:
    """Fail at start-up on an unknown ``kind``, even for components built lazily later."""
    configured = {
        "retrieval.embedder": (settings.retrieval.embedder, container.embedder_registry),
        "retrieval.vector_store": (
            settings.retrieval.vector_store,
            container.vector_store_registry,
        ),
        "retrieval.reranker": (settings.retrieval.reranker, container.reranker_registry),
        "ingest.chunker": (settings.ingest.chunker, container.chunker_registry),
    }
    for key, (spec, registry) in configured.items():
        if spec is not None:
            registry().get(spec.kind, key=f"{key}.kind")


async def close_container(container: Any) -> None:
    """Close every built component that holds resources, newest first."""
    closeables: list[Any] = container.closeables()
    while closeables:
        result = closeables.pop().aclose()
        if inspect.isawaitable(result):
            await result
