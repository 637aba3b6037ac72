"""The gateway: a Litestar app composed from whatever lanes are installed."""

from lanewise.core.gateway.app import create_app

__all__ = ["create_app"]
