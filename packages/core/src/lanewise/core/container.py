"""Dependency-injector containers: configuration names it, plugins supply it.

The plugin manager provides factories (``register_*`` hooks); the container
decides what to build and shares one instance of each per process. Factories
and hooks never see the container: they get :class:`~lanewise.core.factory.Components`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pluggy
from dependency_injector import containers, providers
from lanewise.core.errors import ConfigError
from lanewise.core.factory import Components, FactoryContext
from lanewise.core.guards import GuardChain, ModelCallGuard
from lanewise.core.pipeline import Pipeline
from lanewise.core.plugins import collect
from lanewise.core.protocols import ChatBackend, Closeable, HealthCheck, Retriever
from lanewise.core.registry import Factory, Register
from lanewise.core.settings import ComponentConfig, Settings


def build_component(
    registry: Register, spec: ComponentConfig | None, key: str, components: Components
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
    context = FactoryContext(key=key, kind=spec.kind, options=spec.options, components=components)
    built = call_factory(factory, context)
    if isinstance(built, Closeable):
        components.on_close(built)
    return built


def call_factory(factory: Factory, context: FactoryContext) -> Any:
    """Run a factory; its bad-option errors become a ConfigError naming the key."""
    try:
        return factory.build(context)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{context.key} ({context.kind}): {exc}") from exc


def build_slot(registry: Register, components: Components) -> Any | None:
    """The component a lane's settings section declares for this registry's kind."""
    slot = components.settings.component_spec(registry.kind)
    # No installed lane's section configures this kind: its registered default, if any.
    key, spec = slot if slot is not None else (registry.kind.replace(" ", "_"), None)
    return build_component(registry, spec, key, components)


def build_backends(registry: Register, components: Components) -> dict[str, ChatBackend]:
    """One backend per configured model; with none configured, every default backend."""
    settings = components.settings
    specs = dict(settings.models) or {
        name: ComponentConfig(kind=name) for name in registry.defaults()
    }
    built = {}
    for model, spec in specs.items():
        backend = build_component(registry, spec, f"models.{model}", components)
        if not isinstance(backend, ChatBackend):
            raise ConfigError(f"models.{model}: factory {spec.kind!r} did not return a ChatBackend")
        built[model] = backend
    if settings.default_model is not None and settings.default_model not in built:
        raise ConfigError(
            f"default_model = {settings.default_model!r} is not a configured model; "
            f"allowed: {', '.join(sorted(built)) or 'none'}"
        )
    return built


def build_guards(registry: Register, components: Components) -> GuardChain:
    guards: list[tuple[str, ModelCallGuard]] = []
    for factory in registry.ordered():
        key = f"guards.{factory.name}"
        context = FactoryContext(key=key, kind=factory.name, options={}, components=components)
        guard = call_factory(factory, context)
        if guard is None:  # the guard's own settings turned it off
            continue
        if not isinstance(guard, ModelCallGuard):
            raise ConfigError(f"guard {factory.name!r} did not return a ModelCallGuard")
        if isinstance(guard, Closeable):
            components.on_close(guard)
        guards.append((factory.name, guard))
    return GuardChain(guards)


def build_health_checks(pm: pluggy.PluginManager, components: Components) -> list[HealthCheck]:
    registry = collect(pm, "health check", components=components)
    return [factory.build() for factory in registry.factories.values()]


def resolve_retriever(pm: pluggy.PluginManager, components: Components) -> Retriever | None:
    result: Retriever | None = pm.hook.lanewise_resolve_retriever(components=components)
    return result


class Container(containers.DeclarativeContainer):
    __self__ = providers.Self()
    settings = providers.Dependency(instance_of=Settings)
    plugin_manager = providers.Dependency(instance_of=pluggy.PluginManager)
    closeables: providers.Singleton[list[Any]] = providers.Singleton(list)
    components = providers.Singleton(Components, __self__)

    backend_registry = providers.Singleton(collect, plugin_manager, "backend")
    guard_registry = providers.Singleton(collect, plugin_manager, "guard")

    backends = providers.Singleton(build_backends, backend_registry, components)
    guards = providers.Singleton(build_guards, guard_registry, components)
    embedder = providers.Singleton(
        build_slot, providers.Singleton(collect, plugin_manager, "embedder"), components
    )
    vector_store = providers.Singleton(
        build_slot, providers.Singleton(collect, plugin_manager, "vector store"), components
    )
    reranker = providers.Singleton(
        build_slot, providers.Singleton(collect, plugin_manager, "reranker"), components
    )
    chunker = providers.Singleton(
        build_slot, providers.Singleton(collect, plugin_manager, "chunker"), components
    )
    retriever = providers.Singleton(resolve_retriever, plugin_manager, components)
    health_checks = providers.Singleton(build_health_checks, plugin_manager, components)
    pipeline = providers.Singleton(
        Pipeline,
        backends=backends,
        retriever=retriever,
        plugin_manager=plugin_manager,
        settings=settings,
        guards=guards,
    )


def build_components(settings: Settings, plugin_manager: pluggy.PluginManager) -> Components:
    """Every configured component, wired; building the pipeline here fails bad config early."""
    container = Container(settings=settings, plugin_manager=plugin_manager)
    components: Components = container.components()
    try:
        check_component_kinds(components)
        container.pipeline()
    except BaseException:
        # A later component failed: release what earlier ones opened (files, locks).
        # A thread with its own loop works whether or not the caller runs a loop.
        closer = threading.Thread(target=asyncio.run, args=(close_components(components),))
        closer.start()
        closer.join()
        raise
    return components


def check_component_kinds(components: Components) -> None:
    """Fail at start-up on an unknown ``kind``, even for components built lazily later."""
    settings = components.settings
    for spec_info in settings.lane_sections.values():
        for field, kind in spec_info.components.items():
            spec = getattr(getattr(settings, spec_info.name), field)
            if spec is not None:
                components.registry(kind).get(spec.kind, key=f"{spec_info.name}.{field}.kind")


async def close_components(components: Components) -> None:
    """Close every built component that holds resources, newest first."""
    await components.aclose()
