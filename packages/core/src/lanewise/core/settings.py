"""Settings: ``lanewise.toml`` plus ``LANEWISE_*`` environment variables.

The file comes from ``--config`` or ``LANEWISE_CONFIG`` (else ``./lanewise.toml``
when it exists). Environment variables win over the file; nested keys use a
double underscore (``LANEWISE_GATEWAY__PORT=9000``). Unknown keys are errors so
a typo fails at start-up instead of being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from lanewise.core.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_NAME = "lanewise.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class RetrievalSettings(Section):
    embedder: ComponentConfig | None = None
    vector_store: ComponentConfig | None = None
    reranker: ComponentConfig | None = None
    default_k: int = Field(4, ge=1)
    max_k: int = Field(100, ge=1)
    degrade: bool = Field(
        False, description="RAG answers without context (flagged) when the store is unavailable"
    )
    cache_ttl_s: float = Field(
        300.0, ge=0, description="query-embedding and result cache TTL; 0 disables both"
    )
    cache_max_entries: int = Field(10_000, ge=1, description="in-process cache bound (LRU)")
    max_embedding_inputs: int = Field(
        2048, ge=1, description="/v1/embeddings: inputs per request (more get 400)"
    )
    max_embedding_input_tokens: int = Field(
        8192, ge=1, description="/v1/embeddings: tokens in any one input (more get 400)"
    )
    max_embedding_request_tokens: int = Field(
        300_000, ge=1, description="/v1/embeddings: tokens in all inputs together (more get 400)"
    )


class IngestSettings(Section):
    chunker: ComponentConfig | None = None
    queue: str = Field("embedded", pattern="^(embedded|celery)$")


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
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)

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


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise one :class:`ConfigError` naming every bad key."""
    source = config_path(path)
    if source is not None and not source.is_file():
        raise ConfigError(f"config file {source} does not exist")
    # A subclass per file keeps the file choice out of global state.
    cls = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": source}}
    )
    try:
        settings: Settings = cls(**overrides)
        return settings
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"{source}: {exc}") from None


def _describe(exc: ValidationError, source: Path | None) -> str:
    where = str(source) if source is not None else "settings"
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"])
            msg = "unknown key (check the spelling; see docs/configuration.md)"
            if allowed:
                msg = f"unknown key; allowed: {', '.join(allowed)}"
        got = err.get("input")
        shown = "" if err["type"] in {"extra_forbidden", "missing"} else f" (got {got!r})"
        lines.append(f"{key}: {msg}{shown}")
    return f"invalid configuration in {where}:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section holding ``loc`` accepts, so a typo's message shows the fix."""
    model: type[BaseModel] = Settings
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
