"""lanewise.core: the contracts, hooks and composition that every lane builds on."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lanewise-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
