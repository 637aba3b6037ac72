"""Typed access to a component's TOML options, failing with the key's full name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lanewise.core.errors import ConfigError


class Options:
    """Reads ``config.options``; every bad or unknown key raises ConfigError naming it."""

    def __init__(self, prefix: str, options: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"{prefix}.{unknown[0]} is not an option; allowed: {', '.join(sorted(allowed))}"
            )
        self.prefix = prefix
        self.options = dict(options)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{self.prefix}.{key} must be an integer >= {minimum} (got {value!r})"
            )
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise ConfigError(f"{self.prefix}.{key} must be a number > {minimum:g} (got {value!r})")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.prefix}.{key} must be true or false (got {value!r})")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.options.get(key, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.prefix}.{key} must be a string (got {value!r})")
        return value

    def required_str(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise ConfigError(f"{self.prefix}.{key} is required")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.options.get(key, default)
        if value not in allowed:
            raise ConfigError(
                f"{self.prefix}.{key} = {value!r} is not allowed; allowed: {', '.join(allowed)}"
            )
        return str(value)
