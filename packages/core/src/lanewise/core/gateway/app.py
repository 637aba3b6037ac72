"""``create_app(settings)``: the gateway composed from the installed plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pluggy
from lanewise.core import __version__
from lanewise.core.container import build_components, close_components
from lanewise.core.factory import Components
from lanewise.core.gateway.auth_throttle import AuthFailureThrottle, SharedFailureCounter
from lanewise.core.gateway.health import healthz, readyz
from lanewise.core.gateway.middleware import GatewayMiddleware
from lanewise.core.gateway.openai_api import chat_completions, completions, list_models
from lanewise.core.gateway.openapi import FinishedJsonRenderPlugin
from lanewise.core.gateway.problems import EXCEPTION_HANDLERS
from lanewise.core.heap import freeze_startup_heap
from lanewise.core.plugins import get_plugin_manager
from lanewise.core.settings import Settings, load_settings
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.plugins import InitPluginProtocol


class LanewiseInitPlugin(InitPluginProtocol):
    """Wires the container into Litestar (``Provide``) and lets plugins add to the app."""

    def __init__(
        self, settings: Settings, pm: pluggy.PluginManager, components: Components
    ) -> None:
        self.settings = settings
        self.pm = pm
        self.components = components

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        components = self.components
        pipeline = components.pipeline()
        gateway = self.settings.gateway
        app_config.route_handlers.extend(
            [healthz, readyz, chat_completions, completions, list_models]
        )
        app_config.dependencies.update(
            {
                "components": Provide(lambda: components, sync_to_thread=False),
                "pipeline": Provide(lambda: pipeline, sync_to_thread=False),
                "settings": Provide(lambda: self.settings, sync_to_thread=False),
            }
        )
        throttle = AuthFailureThrottle(
            limit=gateway.auth_failure_limit,
            window_s=gateway.auth_failure_window_s,
            shared=(
                SharedFailureCounter(self.settings.redis_url) if self.settings.redis_url else None
            ),
        )
        app_config.on_shutdown.append(throttle.aclose)
        app_config.middleware.append(
            DefineMiddleware(
                GatewayMiddleware,
                settings=self.settings,
                hook=self.pm.hook,
                throttle=throttle,
                observers=components.request_observers,
            )
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
        app_config.lifespan.append(self._lifespan)
        self.pm.hook.lanewise_configure_gateway(
            app_config=app_config, settings=self.settings, components=components
        )
        return app_config

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close_components(self.components)


def create_app(
    settings: Settings | None = None,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Litestar:
    """Build the gateway. Bad configuration raises ConfigError here, before serving."""
    settings = settings if settings is not None else load_settings()
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager(settings.plugins)
    components = build_components(settings, pm)
    app = Litestar(
        plugins=[LanewiseInitPlugin(settings, pm, components)],
        # Litestar 2.x reads this from the constructor, not from the AppConfig that
        # plugins see, so it must be passed here as well.
        request_max_body_size=settings.gateway.max_body_bytes,
    )
    app.state["components"] = components
    app.state["settings"] = settings
    return app


def create_app_from_env() -> Litestar:
    """uvicorn factory for worker processes: settings from LANEWISE_CONFIG and LANEWISE_*."""
    app = create_app()
    freeze_startup_heap()
    return app
