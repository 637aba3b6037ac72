"""Read core's request context (spine v2) without depending on its presence.

``lanewise.core.context.current_request()`` gives the prompt, index version and
attributes other lanes add (``cost`` from governance). Before it exists on the
installed core, the observe lane works from the events and the ASGI scope alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def _resolve() -> Callable[[], Any] | None:
    try:
        module = importlib.import_module("lanewise.core.context")
    except ImportError:
        return None
    found = getattr(module, "current_request", None)
    return found if callable(found) else None


_current_request = _resolve()


def core_request_context() -> Any | None:
    """Core's ``RequestContext`` for the running request, or None."""
    return _current_request() if _current_request is not None else None


def context_attributes() -> dict[str, Any] | None:
    """The mutable ``attributes`` dict of the running request's context, if any."""
    ctx = core_request_context()
    attributes = getattr(ctx, "attributes", None)
    return attributes if isinstance(attributes, dict) else None
