"""Give ``lanewise serve --workers N`` a shared Prometheus multiprocess directory.

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is imported, so the
variable must be in the environment the workers start with: the ``serve``
command sets it (a fresh directory, removed when the server exits) before
uvicorn spawns them, unless the operator already set one.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from typing import Any

import click
from lanewise.core.settings import load_settings
from lanewise.observe.metrics import MULTIPROC_ENV

_WRAPPED = "_lanewise_observe_multiproc"


def wrap_serve(serve: click.Command) -> None:
    callback = serve.callback
    if callback is None or getattr(callback, _WRAPPED, False):
        return

    @functools.wraps(callback)
    def serve_with_shared_metrics(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if (
            ctx.invoked_subcommand is not None
            or os.environ.get(MULTIPROC_ENV)
            or _workers(ctx, kwargs.get("workers")) <= 1
        ):
            return callback(*args, **kwargs)
        directory = tempfile.mkdtemp(prefix="lanewise-metrics-")
        os.environ[MULTIPROC_ENV] = directory
        try:
            return callback(*args, **kwargs)
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)

    setattr(serve_with_shared_metrics, _WRAPPED, True)
    serve.callback = serve_with_shared_metrics


def _workers(ctx: click.Context, asked: Any) -> int:
    if isinstance(asked, int):
        return asked
    root = ctx.find_root()
    config = (root.obj or {}).get("config") if isinstance(root.obj, dict) else None
    try:
        return load_settings(config).gateway.workers
    except Exception:
        return 1  # the serve command reports the configuration error itself
