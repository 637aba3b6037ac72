"""The Celery app's delivery settings, the start-up checks and lanewise_configure_celery."""

from __future__ import annotations

from typing import Any

import pytest
from lanewise.core.errors import ConfigError
from lanewise.core.hookspecs import hookimpl
from lanewise.ingest.celery_app import EMBED_TASK, PARSE_TASK, create_celery_app


def test_delivery_guarantees_and_routes(lanewise_settings: Any, register_plugin: Any) -> None:
    class Plugin:
        @hookimpl
        def lanewise_configure_celery(self, celery_app: Any, settings: Any) -> None:
            celery_app.conf.task_routes = {**celery_app.conf.task_routes, "x.*": {"queue": "x"}}

    settings = lanewise_settings(
        redis_url="redis://127.0.0.1:1/0",
        ingest={"task_time_limit_s": 30, "visibility_timeout_s": 90},
    )
    app = create_celery_app(settings, register_plugin(Plugin()))
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 30
    assert conf.broker_transport_options["visibility_timeout"] == 90
    assert conf.broker_transport_options["unacked_restore_interval"] == 9
    assert conf.broker_connection_max_retries is None
    assert conf.worker_max_memory_per_child == 2048 * 1024
    assert conf.task_routes[PARSE_TASK] == {"queue": "ingest"}
    assert conf.task_routes[EMBED_TASK] == {"queue": "embed"}
    assert conf.task_routes["x.*"] == {"queue": "x"}  # the hook ran on the real app
    assert {PARSE_TASK, EMBED_TASK} <= set(app.tasks)
    app.close()


def test_start_up_refuses_a_short_visibility_timeout_and_no_broker(lanewise_settings: Any) -> None:
    short = lanewise_settings(
        redis_url="redis://127.0.0.1:1/0",
        ingest={"task_time_limit_s": 60, "visibility_timeout_s": 100},
    )
    with pytest.raises(ConfigError, match=r"celery#5508.*at least 120"):
        create_celery_app(short)
    with pytest.raises(ConfigError, match="needs a broker: set redis_url"):
        create_celery_app(lanewise_settings())
