"""How the lane reaches other lanes' components: only through core's contracts.

Everything the ingest lane needs from outside (the embedder, the vector store,
the chunker, the hook relay, the model-call guards) comes through
:class:`Parts`. Core's typed ``Components`` satisfies it directly; an older
core's container is adapted here, in this one module, and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from lanewise.core.protocols import Chunker, Embedder, VectorStore
from lanewise.core.types import Principal, Usage, UsageEvent


@runtime_checkable
class Parts(Protocol):
    @property
    def hook(self) -> Any: ...

    def embedder(self) -> Embedder | None: ...

    def vector_store(self) -> VectorStore | None: ...

    def chunker(self) -> Chunker | None: ...


class _ContainerParts:
    """A pre-spine-v2 container seen as :class:`Parts`."""

    guards = None

    def __init__(self, container: Any) -> None:
        self._container = container

    @property
    def hook(self) -> Any:
        return self._container.plugin_manager().hook

    @property
    def settings(self) -> Any:
        return self._container.settings()

    @property
    def plugin_manager(self) -> Any:
        return self._container.plugin_manager()

    def embedder(self) -> Embedder | None:
        built: Embedder | None = self._container.embedder()
        return built

    def vector_store(self) -> VectorStore | None:
        built: VectorStore | None = self._container.vector_store()
        return built

    def chunker(self) -> Chunker | None:
        built: Chunker | None = self._container.chunker()
        return built

    def closeables(self) -> list[Any]:
        found: list[Any] = self._container.closeables()
        return found


def parts_of(components: Any) -> Any:
    """``components`` (core's ``Components``) or a container, as :class:`Parts`."""
    if hasattr(components, "hook"):
        return components
    return _ContainerParts(components)


def embedder_tag(embedder: Embedder) -> str:
    """The embedder's identity in chunk ids: vectors from another model never mix."""
    return f"{embedder.id}@{embedder.version}"


async def embed_guarded(
    parts: Any,
    embedder: Embedder,
    texts: Sequence[str],
    *,
    tokens: int,
    principal: Principal,
    request_id: str,
) -> list[list[float]]:
    """One embedding call, admitted by the model-call guards and reported as usage."""
    guards = getattr(parts, "guards", None)
    t0 = time.perf_counter()
    if guards:
        from lanewise.core.guards import ModelCall  # type: ignore[import-untyped,unused-ignore]

        call = ModelCall(
            operation="embedding",
            purpose="ingest",
            model=embedder.id,
            principal=principal,
            request_id=request_id,
            inputs=tuple(texts),
        )
        async with guards.call(call) as scope:
            vectors = await embedder.embed(texts)
            scope.usage = Usage(prompt_tokens=tokens)
    else:
        vectors = await embedder.embed(texts)
    parts.hook.lanewise_on_usage(
        event=UsageEvent(
            request_id=request_id,
            principal=principal,
            model=embedder.id,
            operation="embedding",
            usage=Usage(prompt_tokens=tokens),
            duration_s=time.perf_counter() - t0,
            backend=embedder_tag(embedder),
        )
    )
    return vectors


def open_parts(settings: Any, plugin_manager: Any = None) -> tuple[Any, Any]:
    """Build this process's components: (parts, an async close function)."""
    from lanewise.core import container as core_container
    from lanewise.core.plugins import get_plugin_manager

    pm = plugin_manager or get_plugin_manager(settings.plugins)
    build = getattr(core_container, "build_components", None)
    if build is not None:  # spine v2
        components = build(settings, pm)

        async def close_components() -> None:
            await getattr(core_container, "close_components")(components)  # noqa: B009

        return components, close_components
    container = core_container.build_container(settings, pm)

    async def close_container() -> None:
        await core_container.close_container(container)

    return _ContainerParts(container), close_container


def closeables_of(parts: Any) -> list[Any]:
    """Built components that hold resources (to ask which are single-process)."""
    found: list[Any] = parts.closeables()
    return found


def factory_inputs(args: tuple[Any, ...]) -> tuple[dict[str, Any], Any]:
    """A factory's (options, parts): called as ``factory(ctx)`` (spine v2) or with
    ``(config, settings, container)``."""
    if len(args) == 1:
        ctx = args[0]
        return dict(ctx.options), ctx.components
    config, _settings, container = args
    return dict(config.options), parts_of(container)


def loader_factories(parts: Any) -> dict[str, Any]:
    """Loader factories registered through ``lanewise_register_loaders``, by name."""
    registry_of = getattr(parts, "registry", None)
    if callable(registry_of):
        registry = registry_of("loader")
    else:
        from lanewise.core.plugins import collect

        registry = collect(parts._container.plugin_manager(), "loader")
    return dict(registry.factories)


def build_loader(factory: Any, name: str, options: dict[str, Any], parts: Any) -> Any:
    try:
        from lanewise.core.factory import FactoryContext  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        from types import SimpleNamespace

        ctx: Any = SimpleNamespace(
            key=f"ingest.loaders.{name}",
            kind=name,
            options=options,
            components=parts,
            settings=parts.settings,
        )
    else:
        ctx = FactoryContext(
            key=f"ingest.loaders.{name}", kind=name, options=options, components=parts
        )
    return factory.build(ctx)


def principal_of(request: Any) -> Principal:
    """The authenticated caller (``request.user``; older cores keep it in the scope's state)."""
    from lanewise.core.types import ANONYMOUS

    user = request.scope.get("user")
    if isinstance(user, Principal):
        return user
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else ANONYMOUS


def request_id_of(request: Any) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))
