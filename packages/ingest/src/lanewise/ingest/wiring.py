"""How the lane reaches other lanes' components: only through core's contracts.

Everything the ingest lane needs from outside (the embedder, the vector store,
the chunker, the hook relay, the model-call guards, the loader registry) comes
from core's typed :class:`~lanewise.core.factory.Components`; this module is the
one place that builds, closes and asks them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pluggy
from lanewise.core.container import build_components, close_components
from lanewise.core.embeddings import embed_metered
from lanewise.core.factory import Components, FactoryContext
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.protocols import Embedder
from lanewise.core.settings import Settings
from lanewise.core.types import Principal

Closer = Callable[[], Coroutine[Any, Any, None]]


def open_components(
    settings: Settings, plugin_manager: pluggy.PluginManager | None = None
) -> tuple[Components, Closer]:
    """Build this process's components: (components, an async close function)."""
    pm = plugin_manager or get_plugin_manager(settings.plugins)
    components = build_components(settings, pm)

    async def close() -> None:
        await close_components(components)

    return components, close


def embedder_tag(embedder: Embedder) -> str:
    """The embedder's identity in chunk ids: vectors from another model never mix."""
    return f"{embedder.id}@{embedder.version}"


async def embed_batch(
    components: Components,
    embedder: Embedder,
    texts: Sequence[str],
    *,
    principal: Principal,
    request_id: str,
) -> list[list[float]]:
    """One embedding call, admitted by the model-call guards and reported as usage."""
    return await embed_metered(
        embedder,
        texts,
        guards=components.guards,
        hook=components.hook,
        principal=principal,
        request_id=request_id,
        purpose="ingest",
    )


def build_loaders(components: Components, options: dict[str, dict[str, Any]]) -> list[Any]:
    """Every loader registered through ``lanewise_register_loaders``, built with its options."""
    registry = components.registry("loader")
    return [
        factory.build(
            FactoryContext(
                key=f"ingest.loaders.{name}",
                kind=name,
                options=dict(options.get(name, {})),
                components=components,
            )
        )
        for name, factory in registry.factories.items()
    ]
