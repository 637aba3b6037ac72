"""Core's request context, as the observe lane reads it.

The gateway's middleware opens a :class:`~lanewise.core.context.RequestContext`
per request (request id, principal, prompt and index versions) inside the
observe middleware, and leaves it in the ASGI scope's state for it. Other lanes
add facts to its ``attributes`` (the governance lane's ``cost``); this lane
starts it with ``trace_id`` and ``traceparent`` there, for backends that forward
them upstream.
"""

from __future__ import annotations

from lanewise.core.context import SCOPE_ATTRIBUTES, SCOPE_CONTEXT, RequestContext, current_request

__all__ = ["SCOPE_ATTRIBUTES", "SCOPE_CONTEXT", "RequestContext", "current_request"]
