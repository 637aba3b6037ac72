"""Which files a job may read: server-side paths only inside the allowed root."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from lanewise.core.errors import LanewiseError
from lanewise.ingest.service import Upload


class PathNotAllowed(LanewiseError):
    type_slug = "forbidden"
    title = "Forbidden"
    status = 403


def server_files(paths: Iterable[str], root: Path | None) -> list[Upload]:
    """Each path (a file, or a directory read recursively) as an upload named relative to root."""
    if root is None:
        raise PathNotAllowed(
            "server-side paths are disabled; upload the files, or set ingest.allowed_root "
            "to the directory jobs may read"
        )
    base = root.resolve()
    found: list[Upload] = []
    for raw in paths:
        target = (base / raw).resolve()  # absolute paths stay absolute; symlinks are followed
        if not target.is_relative_to(base):
            raise PathNotAllowed(
                f"{raw!r} is outside ingest.allowed_root; name a path inside {base}",
                path=raw,
            )
        if not target.exists():
            raise PathNotAllowed(f"{raw!r} does not exist inside ingest.allowed_root", path=raw)
        found.extend(Upload(f.relative_to(base).as_posix(), f) for f in _files(target, base))
    return found


def _files(target: Path, base: Path) -> Iterator[Path]:
    if target.is_file():
        yield target
        return
    for path in sorted(target.rglob("*")):
        # A symlink inside the root may point outside it: resolve and check every file.
        if path.is_file() and not path.name.startswith(".") and path.resolve().is_relative_to(base):
            yield path.resolve()


def upload_name(filename: str) -> str:
    """An uploaded file's document id: its relative name, without '..' or a leading '/'."""
    parts = [
        p for p in PurePosixPath(filename.replace("\\", "/")).parts if p not in {"", ".", "..", "/"}
    ]
    return "/".join(parts) or "upload"
