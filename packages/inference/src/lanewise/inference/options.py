"""Typed reads of a model's ``[models.<name>]`` options with errors that name the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lanewise.core.errors import ConfigError


class Options:
    def __init__(self, prefix: str, options: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"{prefix}: unknown option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        self.prefix = prefix
        self.options = dict(options)

    def _fail(self, key: str, want: str) -> ConfigError:
        return ConfigError(f"{self.prefix}.{key} must be {want} (got {self.options[key]!r})")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.options.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.options.get(key, default)
        if value not in allowed:
            raise ConfigError(
                f"{self.prefix}.{key} = {value!r} is not allowed; use one of: {', '.join(allowed)}"
            )
        return str(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(key, f"an integer >= {minimum}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self._fail(key, f"a number >= {minimum:g}")
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
