"""Typed reads of a component's TOML options; every error names the full key.

One helper for every lane, so ``[models.x]``, ``[retrieval.embedder]`` and a
third party's table all fail the same way: unknown keys list what is allowed,
bad values say what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lanewise.core.errors import ConfigError


class Options:
    def __init__(self, prefix: str, options: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"{prefix}.{unknown[0]} is not an option; allowed: {', '.join(sorted(allowed))}"
            )
        self.prefix = prefix
        self.options = dict(options)

    def _fail(self, key: str, want: str) -> ConfigError:
        return ConfigError(f"{self.prefix}.{key} must be {want} (got {self.options[key]!r})")

    def has(self, key: str) -> bool:
        return key in self.options

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.options.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise ConfigError(f"{self.prefix}.{key} is required")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.options.get(key, default)
        if value not in allowed:
            raise ConfigError(
                f"{self.prefix}.{key} = {value!r} is not allowed; use one of: {', '.join(allowed)}"
            )
        return str(value)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{self.prefix}.{key} must be an integer >= {minimum} (got {value!r})"
            )
        return value

    def number(
        self, key: str, default: float, *, minimum: float = 0.0, exclusive: bool = False
    ) -> float:
        """A number ``>= minimum`` (``> minimum`` when ``exclusive``: timeouts cannot be 0)."""
        value = self.options.get(key, default)
        low_ok = isinstance(value, int | float) and (
            value > minimum if exclusive else value >= minimum
        )
        if isinstance(value, bool) or not low_ok:
            relation = ">" if exclusive else ">="
            raise ConfigError(
                f"{self.prefix}.{key} must be a number {relation} {minimum:g} (got {value!r})"
            )
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.options.get(key, {})
        if not isinstance(value, Mapping):
            raise self._fail(key, "a table")
        return dict(value)
