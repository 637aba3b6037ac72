"""``create_app(settings)``: the gateway composed from the installed plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pluggy
from lanewise.core import __version__
from lanewise.core.container import build_container, close_container
from lanewise.core.errors import Unauthorized
from lanewise.core.gateway.auth_throttle import AuthFailureThrottle
from lanewise.core.gateway.health import healthz, readyz
from lanewise.core.gateway.middleware import RequestIdMiddleware
from lanewise.core.gateway.openai_api import chat_completions, completions, list_models
from lanewise.core.gateway.openapi import FinishedJsonRenderPlugin
from lanewise.core.gateway.problems import EXCEPTION_HANDLERS
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.settings import Settings, load_settings
from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.plugins import InitPluginProtocol

API_PREFIX = "/v1/"


class LanewiseInitPlugin(InitPluginProtocol):
    """Wires the container into Litestar (``Provide``) and lets plugins add to the app."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, container: Any) -> None:
        self.settings = settings
        self.pm = pm
        self.container = container
        self.throttle = AuthFailureThrottle(
            limit=settings.gateway.auth_failure_limit,
            window_s=settings.gateway.auth_failure_window_s,
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        container = self.container
        gateway = self.settings.gateway
        app_config.route_handlers.extend(
            [healthz, readyz, chat_completions, completions, list_models]
        )
        app_config.dependencies.update(
            {
                "container": Provide(lambda: container, sync_to_thread=False),
                "pipeline": Provide(lambda: container.pipeline(), sync_to_thread=False),
                "settings": Provide(lambda: self.settings, sync_to_thread=False),
            }
        )
        # Litestar would configure the root logger at INFO, putting a log line for every
        # upstream httpx call on the hot path; the problem handlers log errors themselves.
        app_config.logging_config = LoggingConfig(
            configure_root_logger=False, log_exceptions="never"
        )
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)  # type: ignore[arg-type]
        app_config.request_max_body_size = gateway.max_body_bytes
        app_config.openapi_config = OpenAPIConfig(
            title="lanewise gateway",
            version=__version__,
            path="/schema",
            render_plugins=[
                FinishedJsonRenderPlugin(self.settings, path="/openapi.json"),
                RedocRenderPlugin(path=["/", "/redoc"]),
                SwaggerRenderPlugin(path="/swagger"),
            ],
        )
        if gateway.cors_origins:
            app_config.cors_config = CORSConfig(allow_origins=gateway.cors_origins)
        app_config.before_request = self._authenticate
        app_config.lifespan.append(self._lifespan)
        self.pm.hook.lanewise_configure_gateway(
            app_config=app_config, settings=self.settings, container=container
        )
        return app_config

    async def _authenticate(self, request: Request[Any, Any, Any]) -> None:
        if not request.url.path.startswith(API_PREFIX):
            return
        address = request.client.host if request.client else ""
        self.throttle.check(address)
        try:
            principal = self.pm.hook.lanewise_resolve_principal(
                headers=dict(request.headers), settings=self.settings
            )
            if principal is None:
                raise Unauthorized("no authentication plugin accepted this request")
        except Unauthorized:
            self.throttle.failed(address)
            raise
        request.scope.setdefault("state", {})["principal"] = principal

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close_container(self.container)


def create_app(
    settings: Settings | None = None,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Litestar:
    """Build the gateway. Bad configuration raises ConfigError here, before serving."""
    settings = settings if settings is not None else load_settings()
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager(settings.plugins)
    container = build_container(settings, pm)
    app = Litestar(
        plugins=[LanewiseInitPlugin(settings, pm, container)],
        # Litestar 2.x reads this from the constructor, not from the AppConfig that
        # plugins see, so it must be passed here as well.
        request_max_body_size=settings.gateway.max_body_bytes,
    )
    # Around Litestar's own exception handling rather than in app middleware, which
    # runs only for matched routes: 404/405 problems carry the request id as well.
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler)
    app.state["container"] = container
    app.state["settings"] = settings
    return app


def create_app_from_env() -> Litestar:
    """uvicorn factory for worker processes: settings from LANEWISE_CONFIG and LANEWISE_*."""
    return create_app()
