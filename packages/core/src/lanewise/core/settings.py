"""Settings: ``lanewise.toml`` plus ``LANEWISE_*`` environment variables.

The file comes from ``--config`` or ``LANEWISE_CONFIG`` (else ``./lanewise.toml``
when it exists). Environment variables win over the file; nested keys use a
double underscore (``LANEWISE_GATEWAY__PORT=9000``). Unknown keys are errors so
a typo fails at start-up instead of being silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast, get_args

from lanewise.core.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_NAME = "lanewise.toml"
LANE_PACKAGES = {
    "retrieval": "lanewise-retrieval",
    "ingest": "lanewise-ingest",
    "governance": "lanewise-governance",
    "observe": "lanewise-observe",
    "inference": "lanewise-inference",
}
"""Sections the project's own lanes own: a table for one that is not installed names the
package to install instead of only "unknown key"."""


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


S = TypeVar("S", bound=Section)


@dataclass(frozen=True)
class SectionSpec:
    name: str
    model: type[Section]
    description: str = ""
    plugin: str = ""
    components: Mapping[str, str] = field(default_factory=dict)
    """Field name -> registry kind (``{"embedder": "embedder"}``) for components core builds."""


class SectionRegister:
    """The ``register`` callback handed to ``lanewise_register_settings``."""

    def __init__(self) -> None:
        self.sections: dict[str, SectionSpec] = {}

    def __call__(
        self,
        name: str,
        model: type[Section],
        *,
        description: str = "",
        components: Mapping[str, str] | None = None,
    ) -> None:
        if name in Settings.model_fields:
            raise ConfigError(f"settings section [{name}] is core's; a lane must use another name")
        if name in self.sections:
            raise ConfigError(
                f"two plugins register settings section [{name}] "
                f"({self.sections[name].plugin} and {model.__module__})"
            )
        if not (isinstance(model, type) and issubclass(model, Section)):
            raise ConfigError(f"settings section [{name}] must be a lanewise Section model")
        for fname in components or {}:
            if fname not in model.model_fields:
                raise ConfigError(f"[{name}] declares component {fname!r}, which is not a field")
        self.sections[name] = SectionSpec(
            name, model, description, model.__module__, dict(components or {})
        )


class ComponentConfig(BaseModel):
    """``kind`` picks a registered factory; every other key is that factory's option."""

    model_config = ConfigDict(extra="allow")
    kind: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ApiKeyConfig(Section):
    """An API key as stored: only its SHA-256, never the key itself."""

    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    tenant: str = Field(min_length=1)
    user: str | None = None
    workflow: str | None = None
    priority: Literal["interactive", "batch"] = "interactive"


class GatewaySettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger bodies get 413")
    request_timeout_s: float = Field(120.0, gt=0, description="deadline for every upstream call")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="grace for in-flight requests")
    sse_keepalive_s: float = Field(15.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    max_header_bytes: int = Field(
        32_768, ge=1024, description="request line + headers; larger get 431"
    )
    max_headers: int = Field(100, ge=8, description="header fields per request; more get 431")
    header_timeout_s: float = Field(
        20.0, gt=0, description="to receive a request's headers (idle new connections close)"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="longest pause while a request body arrives; then 408"
    )
    body_min_rate_bytes_s: float = Field(
        500.0, ge=0, description="slowest average body rate once body_timeout_s has passed"
    )
    keepalive_timeout_s: float = Field(
        20.0, gt=0, description="an idle keep-alive connection closes after this"
    )
    max_connections: int = Field(
        1024, ge=1, description="open connections per worker; a request beyond gets 503"
    )
    linger_s: float = Field(
        5.0, ge=0, description="after an early answer (413...), read the rest this long"
    )
    auth_failure_limit: int = Field(
        20, ge=1, description="failed authentications per client address per window; then 429"
    )
    auth_failure_window_s: float = Field(60.0, gt=0, description="window of auth_failure_limit")
    api_keys: list[ApiKeyConfig] = Field(
        default_factory=list,
        description="when empty, /v1 is open and every caller is tenant 'default'",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LANEWISE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    plugins: Annotated[list[str] | None, NoDecode] = None
    data_dir: Path = Path(".lanewise")
    redis_url: str | None = None
    database_url: str | None = None
    default_model: str | None = None
    models: dict[str, ComponentConfig] = Field(default_factory=dict)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    # Set on the class load_settings builds: the installed lanes' sections.
    lane_sections: ClassVar[Mapping[str, SectionSpec]] = {}

    def section(self, model: type[S]) -> S:
        """A lane's validated section, by its model (its defaults when none is registered)."""
        for name, spec in self.lane_sections.items():
            if spec.model is model:
                value = getattr(self, name)
                assert isinstance(value, model)
                return value
        return model()

    def component_spec(self, kind: str) -> tuple[str, ComponentConfig | None] | None:
        """The config key and spec of the component a section declares for ``kind``."""
        for name, spec in self.lane_sections.items():
            for fname, slot_kind in spec.components.items():
                if slot_kind == kind:
                    value = getattr(getattr(self, name), fname)
                    return f"{name}.{fname}", value
        return None

    @field_validator("plugins", mode="before")
    @classmethod
    def _split_plugins(cls, value: Any) -> Any:
        if isinstance(value, str):
            # Blank means unset (every installed plugin), as in plugins.allowlist_from_env.
            return [p.strip() for p in value.split(",") if p.strip()] or None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The config file in effect: explicit, else ``LANEWISE_CONFIG``, else ./lanewise.toml."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("LANEWISE_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.exists() else None


def load_settings(
    path: str | Path | None = None,
    *,
    sections: Mapping[str, SectionSpec] | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate settings; raise one :class:`ConfigError` naming every bad key.

    ``sections`` are the lanes' settings sections; by default they come from the
    installed plugins (``lanewise_register_settings``) that ``plugins`` allows.
    """
    source = config_path(path)
    if source is not None and not source.is_file():
        raise ConfigError(f"config file {source} does not exist")
    if sections is None:
        sections = installed_sections(_allowlist(source, overrides))
    cls = _settings_class(source, sections)
    try:
        settings: Settings = cls(**overrides)
        return settings
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, cls)) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"{source}: {exc}") from None


def installed_sections(allowlist: list[str] | None) -> dict[str, SectionSpec]:
    from lanewise.core.plugins import get_plugin_manager, installed_plugins, settings_sections

    # Names that are not installed are reported when the gateway builds its plugins.
    allowed = None if allowlist is None else sorted(set(allowlist) & set(installed_plugins()))
    return settings_sections(get_plugin_manager(allowed))


def _allowlist(source: Path | None, overrides: Mapping[str, Any]) -> list[str] | None:
    """The ``plugins`` setting, read before validation: it decides which sections exist."""
    raw = overrides.get("plugins", os.environ.get("LANEWISE_PLUGINS"))
    if raw is None and source is not None:
        try:
            raw = tomllib.loads(source.read_text()).get("plugins")
        except (OSError, tomllib.TOMLDecodeError):
            raw = None  # validation below reports the file's problem
    if isinstance(raw, str):
        return [p.strip() for p in raw.split(",") if p.strip()] or None
    if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        return raw or None
    return None


def _settings_class(source: Path | None, sections: Mapping[str, SectionSpec]) -> type[Settings]:
    # A subclass per file keeps the file choice out of global state.
    base = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": source}}
    )
    fields: dict[str, Any] = {
        name: (spec.model, Field(default_factory=spec.model, description=spec.description))
        for name, spec in sections.items()
    }
    cls = cast("type[Settings]", create_model("Settings", __base__=base, **fields))
    cls.lane_sections = dict(sections)
    return cls


def _describe(exc: ValidationError, source: Path | None, cls: type[Settings]) -> str:
    where = str(source) if source is not None else "settings"
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"], cls)
            msg = "unknown key (check the spelling; see docs/configuration.md)"
            if allowed:
                msg = f"unknown key; allowed: {', '.join(allowed)}"
            package = LANE_PACKAGES.get(str(err["loc"][0])) if len(err["loc"]) == 1 else None
            if package is not None:
                msg = (
                    f"section [{key}] belongs to {package}, which is not installed or not "
                    f"allowed by plugins/LANEWISE_PLUGINS; install it (pip install {package}) "
                    "or remove the section"
                )
        got = err.get("input")
        shown = "" if err["type"] in {"extra_forbidden", "missing"} else f" (got {got!r})"
        lines.append(f"{key}: {msg}{shown}")
    return f"invalid configuration in {where}:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: tuple[int | str, ...], cls: type[Settings]) -> list[str]:
    """The keys the section holding ``loc`` accepts, so a typo's message shows the fix."""
    model: type[BaseModel] = cls
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: same model as its list
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        nested = [
            t
            for t in (field.annotation, *get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)
