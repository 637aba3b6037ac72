"""Refusals, as problem+json the official ``openai`` SDK raises as typed errors."""

from __future__ import annotations

from lanewise.core.errors import LanewiseError, LimitExceeded


class BudgetExceeded(LimitExceeded):
    """429: a budget has no room for the call (the body names the budget)."""

    type_slug = "budget-exceeded"
    title = "Budget exceeded"


class RateLimited(LimitExceeded):
    """429: a GCRA rate limit (RPM or TPM) refused the call."""

    type_slug = "rate-limited"
    title = "Rate limit exceeded"


class OutOfScope(LanewiseError):
    """403: the API key is valid but not for this route, model or priority."""

    type_slug = "forbidden"
    title = "Forbidden"
    status = 403


class BudgetStoreUnavailable(LanewiseError):
    """503: the shared counters are unreachable and the budget fails closed."""

    type_slug = "budget-store-unavailable"
    title = "Budget store unavailable"
    status = 503
