"""Call one factory directly, as the container would, for a lane's unit tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lanewise.core.container import Container
from lanewise.core.factory import FactoryContext
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.settings import ComponentConfig, Settings, load_settings


def factory_context(
    spec: ComponentConfig | Mapping[str, Any],
    *,
    key: str = "test.component",
    settings: Settings | None = None,
    plugins: Iterable[object] = (),
    allowlist: list[str] | None = None,
) -> FactoryContext:
    """A real FactoryContext for ``spec`` (``{"kind": ..., **options}``).

    Components come from a real container over ``settings`` and the installed
    plugins (``allowlist``; ``[]`` for core only) plus ``plugins``.
    """
    config = spec if isinstance(spec, ComponentConfig) else ComponentConfig(**dict(spec))
    settings = settings if settings is not None else load_settings(None)
    pm = get_plugin_manager(allowlist, extra=plugins)
    components = Container(settings=settings, plugin_manager=pm).components()
    return FactoryContext(key=key, kind=config.kind, options=config.options, components=components)
