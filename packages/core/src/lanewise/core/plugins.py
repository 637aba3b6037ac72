"""The plugin manager: entry points in group ``lanewise``, filtered by an allowlist."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

import pluggy
from lanewise.core import hookspecs
from lanewise.core.errors import ConfigError
from lanewise.core.registry import Register
from lanewise.core.settings import SectionRegister, SectionSpec

ENTRY_POINT_GROUP = "lanewise"
ALWAYS_LOADED = frozenset({"core"})
REGISTRY_HOOKS = {
    "backend": "lanewise_register_backends",
    "embedder": "lanewise_register_embedders",
    "vector store": "lanewise_register_vector_stores",
    "loader": "lanewise_register_loaders",
    "chunker": "lanewise_register_chunkers",
    "reranker": "lanewise_register_rerankers",
    "evaluator": "lanewise_register_evaluators",
    "health check": "lanewise_register_health_checks",
    "guard": "lanewise_register_guards",
}


def allowlist_from_env() -> frozenset[str] | None:
    raw = os.environ.get("LANEWISE_PLUGINS", "").strip()
    if not raw:
        return None
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def installed_plugins() -> dict[str, str]:
    """Entry-point name -> module path of every installed lanewise plugin."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_plugin_manager(
    allowlist: Iterable[str] | None = None,
    *,
    extra: Iterable[ModuleType | object] = (),
) -> pluggy.PluginManager:
    """Build a manager with every installed plugin the allowlist admits.

    ``allowlist`` defaults to ``LANEWISE_PLUGINS`` (comma-separated entry-point
    names); ``core`` is always loaded. ``extra`` registers objects directly,
    as tests and embedding applications do.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    allowed = frozenset(allowlist) if allowlist is not None else allowlist_from_env()
    available = installed_plugins()
    if allowed is not None:
        unknown = sorted(allowed - set(available))
        if unknown:
            raise ConfigError(
                f"LANEWISE_PLUGINS names {', '.join(unknown)}, which are not installed; "
                f"installed: {', '.join(sorted(available))}"
            )
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed and ep.name not in ALWAYS_LOADED:
            continue
        if pm.get_plugin(ep.name) is None:
            pm.register(_load(ep), name=ep.name)
    for plugin in extra:
        pm.register(plugin)
    check_pending(pm)
    return pm


def _load(ep: EntryPoint) -> object:
    """Import one plugin; a broken one names itself instead of crashing with a traceback."""
    try:
        return ep.load()
    except Exception as exc:
        raise ConfigError(
            f"plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}; "
            f"fix or uninstall it, or leave it out of LANEWISE_PLUGINS"
        ) from exc


def check_pending(pm: pluggy.PluginManager) -> None:
    """Fail on a hookimpl that names no hookspec (a typo would otherwise never be called)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = sorted(n for n in dir(hookspecs) if n.startswith("lanewise_"))
        unknown = sorted(
            name
            for name in dir(exc.plugin)
            if name.startswith("lanewise_")
            and name not in known
            and pm.parse_hookimpl_opts(exc.plugin, name) is not None
        )
        hints = [
            f"{name} (did you mean {close[0]}?)" if close else name
            for name in unknown
            for close in [difflib.get_close_matches(name, known, n=1)]
        ]
        raise ConfigError(
            f"plugin {_display_name(pm, exc.plugin)} implements unknown hook(s) "
            f"{', '.join(hints) or exc}; known hooks: {', '.join(known)}"
        ) from None


def collect(pm: pluggy.PluginManager, kind: str, **kwargs: object) -> Register:
    """Run one ``register_*`` hook and return what the plugins registered."""
    register = Register(kind)
    getattr(pm.hook, REGISTRY_HOOKS[kind])(register=register, **kwargs)
    return register


def loaded_plugin_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, _ in pm.list_name_plugin())


def _display_name(pm: pluggy.PluginManager, plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    name = pm.get_name(plugin)
    return name if name and not name.isdigit() else type(plugin).__qualname__


def settings_sections(pm: pluggy.PluginManager) -> dict[str, SectionSpec]:
    """Every lane's settings section, from ``lanewise_register_settings``."""
    register = SectionRegister()
    pm.hook.lanewise_register_settings(register=register)
    return register.sections
