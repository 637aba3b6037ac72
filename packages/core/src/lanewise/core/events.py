"""Emit ``lanewise_on_usage`` / ``lanewise_on_stage`` without pluggy's per-call machinery.

Both events fire several times per request. pluggy's ``hook(event=...)`` builds
keyword arguments, checks them against the spec and runs its generic multicall:
about 2 µs per event, even with nobody listening. These notifications have no
results and no wrappers, so :func:`notify` calls the implementations' functions
directly, in pluggy's order, from a list it rebuilds whenever the registered
implementations change. Anything it cannot call that way (a wrapper, a
historic hook, an implementation with other arguments, an object that is no
pluggy hook caller) goes through pluggy as before. pluggy's call monitoring
(``add_hookcall_monitoring``) does not see these two events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CACHE_MAX = 64
"""Hook callers remembered (one per plugin manager in use; tests build many)."""

_direct: dict[int, tuple[list[Any], tuple[Callable[[Any], object], ...] | None]] = {}


def notify(caller: Any, event: object) -> None:
    """Call every implementation of a notification hook with ``event``.

    ``caller`` is a hook caller (``plugin_manager.hook.lanewise_on_stage``);
    exceptions of an implementation propagate, as they do through pluggy.
    """
    get_hookimpls = getattr(caller, "get_hookimpls", None)
    if get_hookimpls is None:
        caller(event=event)
        return
    impls = get_hookimpls()
    cached = _direct.get(id(caller))
    # The cached list holds the implementation objects themselves: equal lists mean
    # the same implementations (compared by identity), even if an id was reused.
    if cached is None or cached[0] != impls:
        if len(_direct) >= CACHE_MAX:
            _direct.clear()
        cached = _direct[id(caller)] = (impls, _functions(caller, impls))
    functions = cached[1]
    if functions is None:
        caller(event=event)
        return
    for function in functions:
        function(event)


def _functions(caller: Any, impls: list[Any]) -> tuple[Callable[[Any], object], ...] | None:
    if caller.is_historic():
        return None
    for impl in impls:
        if (
            impl.hookwrapper
            or impl.wrapper
            or getattr(impl, "kwargnames", ())  # keyword-only arguments (pluggy >= 1.6)
            or tuple(impl.argnames) != ("event",)
        ):
            return None
    # pluggy calls the last registered (and tryfirst) implementation first.
    return tuple(impl.function for impl in reversed(impls))
