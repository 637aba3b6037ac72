"""What factories and hooks get: a typed context, never the container itself.

``FactoryContext`` is the one argument of every ``register_*`` factory: the
config key it was built for (so errors name it), its options, one helper that
validates them, the settings, typed access to the other components it may
need, and a way to register cleanup. ``Components`` is that typed access; the
same object is handed to hooks that need built components.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lanewise.core.errors import ConfigError
from lanewise.core.options import Options
from lanewise.core.protocols import (
    ChatBackend,
    Chunker,
    Closeable,
    Embedder,
    HealthCheck,
    Reranker,
    Retriever,
    VectorStore,
)
from lanewise.core.settings import ComponentConfig, Section, Settings
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    import pluggy
    from lanewise.core.container import Container
    from lanewise.core.gateway.observers import RequestObserver
    from lanewise.core.guards import GuardChain
    from lanewise.core.pipeline import Pipeline
    from lanewise.core.registry import Register

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=Section)


class Components:
    """Typed access to the built components of this process (each built once, lazily)."""

    def __init__(self, container: Container) -> None:
        self._built = container
        self.request_observers: list[RequestObserver] = []
        """Lanes append theirs in ``lanewise_configure_gateway``; the gateway's middleware
        calls them for every request (:mod:`lanewise.core.gateway.observers`)."""

    @property
    def settings(self) -> Settings:
        return self._built.settings()

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._built.plugin_manager()

    @property
    def hook(self) -> pluggy.HookRelay:
        """Call hooks (``components.hook.lanewise_on_stage(event=...)``)."""
        return self.plugin_manager.hook

    @property
    def guards(self) -> GuardChain:
        return self._built.guards()

    def section(self, model: type[S]) -> S:
        return self.settings.section(model)

    def embedder(self) -> Embedder | None:
        return cast("Embedder | None", self._built.embedder())

    def vector_store(self) -> VectorStore | None:
        return cast("VectorStore | None", self._built.vector_store())

    def reranker(self) -> Reranker | None:
        return cast("Reranker | None", self._built.reranker())

    def chunker(self) -> Chunker | None:
        return cast("Chunker | None", self._built.chunker())

    def retriever(self) -> Retriever | None:
        return self._built.retriever()

    def backends(self) -> Mapping[str, ChatBackend]:
        return cast("Mapping[str, ChatBackend]", self._built.backends())

    def pipeline(self) -> Pipeline:
        return self._built.pipeline()

    def health_checks(self) -> list[HealthCheck]:
        return self._built.health_checks()

    def registry(self, kind: str) -> Register:
        """What plugins registered for ``kind`` ("backend", "loader", "chunker", ...)."""
        from lanewise.core.plugins import collect

        return collect(self.plugin_manager, kind)

    def build(self, kind: str, spec: ComponentConfig | None, key: str) -> Any | None:
        """Build one more component of ``kind`` from ``spec`` (e.g. a pool's replicas)."""
        from lanewise.core.container import build_component

        return build_component(self.registry(kind), spec, key, self)

    def on_close(self, resource: Closeable) -> None:
        """Close ``resource`` when the process's components close (newest first)."""
        self._built.closeables().append(resource)

    def closeables(self) -> list[Closeable]:
        return list(self._built.closeables())

    async def aclose(self) -> None:
        """Close every built component that holds resources, newest first."""
        closeables = self._built.closeables()
        while closeables:
            result = closeables.pop().aclose()
            if inspect.isawaitable(result):
                await result


@dataclass(frozen=True, slots=True)
class FactoryContext:
    """The argument of every ``register_*`` factory."""

    key: str
    """The config key the component is built for, e.g. ``retrieval.embedder`` or ``models.gpt``."""
    kind: str
    options: Mapping[str, Any]
    components: Components

    @property
    def settings(self) -> Settings:
        return self.components.settings

    def read(self, allowed: Iterable[str]) -> Options:
        """The options as a typed reader; unknown keys fail naming ``key`` and what is allowed."""
        return Options(self.key, self.options, set(allowed))

    def parse(self, model: type[M]) -> M:
        """The options validated by a pydantic model; errors name ``key.<option>``."""
        try:
            return model.model_validate(dict(self.options))
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in (self.key, *err["loc"]))
                if err["type"] == "extra_forbidden":
                    allowed = ", ".join(sorted(model.model_fields))
                    lines.append(f"{where} is not an option; allowed: {allowed}")
                else:
                    lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
            raise ConfigError("; ".join(lines)) from None

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.key} ({self.kind}): {message}")

    def on_close(self, resource: Closeable) -> None:
        self.components.on_close(resource)
