"""Core's request context, as the observe lane reads it.

The gateway's middleware opens a :class:`~lanewise.core.context.RequestContext`
per request (request id, principal, prompt and index versions) before the
observe middleware runs; other lanes add facts to its ``attributes`` (the
governance lane's ``cost``), and this lane adds ``trace_id`` and ``traceparent``
there for backends that forward them upstream.
"""

from __future__ import annotations

from lanewise.core.context import RequestContext, current_request

__all__ = ["RequestContext", "current_request"]
