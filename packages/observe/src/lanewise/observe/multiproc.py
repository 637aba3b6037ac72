"""Give ``lanewise serve`` a shared Prometheus multiprocess directory, and mark it served.

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is imported, so the
variable must be in the environment the workers start with: the ``serve``
command sets it (a fresh directory, removed when the server exits) before
uvicorn spawns them, unless the operator already set one. It is needed with
``--workers N`` and whenever the telemetry sidecar runs (on by default under
``serve``): the sidecar counts requests in a process of its own, and the
gateway's ``/metrics`` adds up every process's files.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import click
from lanewise.core.settings import Settings, load_settings
from lanewise.observe.metrics import MULTIPROC_ENV

_WRAPPED = "_lanewise_observe_multiproc"
SERVED_ENV = "LANEWISE_OBSERVE_SERVED"
"""Set by ``lanewise serve`` for its gateway processes: ``observe.sidecar`` unset means on."""


def wrap_serve(serve: click.Command) -> None:
    callback = serve.callback
    if callback is None or getattr(callback, _WRAPPED, False):
        return

    @functools.wraps(callback)
    def serve_with_shared_metrics(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is not None:
            return callback(*args, **kwargs)
        settings = _settings(ctx)
        workers = kwargs.get("workers")
        if not isinstance(workers, int):
            workers = settings.gateway.workers if settings is not None else 1
        os.environ[SERVED_ENV] = "1"
        own_dir = not os.environ.get(MULTIPROC_ENV) and (workers > 1 or _sidecar(settings))
        directory = tempfile.mkdtemp(prefix="lanewise-metrics-") if own_dir else None
        restore = None
        if directory is not None:
            os.environ[MULTIPROC_ENV] = directory
            if workers == 1:
                restore = _use_multiprocess_values()
        try:
            return callback(*args, **kwargs)
        finally:
            os.environ.pop(SERVED_ENV, None)
            if restore is not None:
                restore()
            if directory is not None:
                os.environ.pop(MULTIPROC_ENV, None)
                shutil.rmtree(directory, ignore_errors=True)

    setattr(serve_with_shared_metrics, _WRAPPED, True)
    serve.callback = serve_with_shared_metrics


def _settings(ctx: click.Context) -> Settings | None:
    root = ctx.find_root()
    config = (root.obj or {}).get("config") if isinstance(root.obj, dict) else None
    try:
        return load_settings(config)
    except Exception:
        return None  # the serve command reports the configuration error itself


def _sidecar(settings: Settings | None) -> bool:
    from lanewise.observe.settings import observe_settings

    try:
        return settings is not None and observe_settings(settings).sidecar is not False
    except Exception:
        return False


def _use_multiprocess_values() -> Callable[[], None]:
    """One worker runs in this very process, where prometheus-client was imported before
    the variable was set: values created from now on go to the shared files too.

    Returns what puts the previous storage back (the command may run inside a longer
    process: a test's ``CliRunner``)."""
    from prometheus_client import values

    previous = values.ValueClass
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

    def restore() -> None:
        values.ValueClass = previous

    return restore
