"""Which lanewise distributions are installed, and at which versions."""

from __future__ import annotations

from importlib.metadata import distributions


def installed_distributions() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("lanewise-") and name != "lanewise-workspace":
            found[name] = dist.version
    return dict(sorted(found.items()))
