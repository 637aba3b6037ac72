"""Named factories that plugins register and configuration selects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lanewise.core.errors import ConfigError


@dataclass(frozen=True)
class Factory:
    name: str
    build: Callable[..., Any]
    description: str = ""
    plugin: str = ""
    default: bool = False
    order: int = 0


@dataclass
class Register:
    """The ``register`` callback handed to ``lanewise_register_*`` hooks."""

    kind: str
    factories: dict[str, Factory] = field(default_factory=dict)

    def __call__(
        self,
        name: str,
        build: Callable[..., Any],
        *,
        description: str = "",
        default: bool = False,
        order: int = 0,
    ) -> None:
        """Register ``build`` under ``name``; ``default`` marks the embedded default.

        ``order`` sorts kinds that run as a chain (guards: lower admits first).
        """
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{self.kind} name {name!r} must be alphanumeric (- and _ allowed)")
        if name in self.factories:
            raise ConfigError(
                f"two plugins register {_article(self.kind)} {self.kind} named {name!r}; "
                "remove one or restrict them with LANEWISE_PLUGINS"
            )
        plugin = getattr(build, "__module__", "")
        self.factories[name] = Factory(name, build, description, plugin, default, order)

    def ordered(self) -> list[Factory]:
        return sorted(self.factories.values(), key=lambda f: (f.order, f.name))

    def names(self) -> list[str]:
        return sorted(self.factories)

    def defaults(self) -> list[str]:
        return sorted(n for n, f in self.factories.items() if f.default)

    def default(self) -> str | None:
        """The one default of this kind, if exactly one plugin marked one."""
        defaults = self.defaults()
        return defaults[0] if len(defaults) == 1 else None

    def get(self, name: str, *, key: str) -> Factory:
        try:
            return self.factories[name]
        except KeyError:
            allowed = ", ".join(self.names()) or "none (install a lanewise lane package)"
            raise ConfigError(
                f"{key} = {name!r} is not a known {self.kind}; allowed: {allowed}"
            ) from None


def _article(word: str) -> str:
    return "an" if word[:1] in set("aeiou") else "a"
