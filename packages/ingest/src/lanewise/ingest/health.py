"""Readiness of the ingest broker (``lanewise doctor``, ``/readyz``) in Celery mode."""

from __future__ import annotations

import asyncio

from lanewise.core.errors import ConfigError
from lanewise.core.settings import Settings
from lanewise.ingest.celery_app import QUEUES, broker_url
from lanewise.ingest.settings import ingest_settings

TIMEOUT_S = 1.5


class BrokerHealth:
    """The Redis holding the ``ingest``/``embed`` queues (and the job state) answers.

    Without it no job can be submitted or followed, and workers wait to reconnect.
    """

    name = "ingest-broker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def check(self) -> str | None:
        try:
            url = broker_url(self.settings, ingest_settings(self.settings))
        except ConfigError as exc:
            return exc.detail
        return await asyncio.to_thread(self._ping, url)

    def _ping(self, url: str) -> str | None:
        import redis
        from kombu.utils.url import maybe_sanitize_url

        client = redis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S, retry=None
        )
        try:
            client.ping()
            for queue in QUEUES:
                client.llen(queue)
        except redis.exceptions.RedisError as exc:
            return f"broker {maybe_sanitize_url(url)} unreachable: {exc}"
        finally:
            client.close()
        return None
