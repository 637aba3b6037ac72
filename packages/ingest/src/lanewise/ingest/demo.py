"""``lanewise demo``: the project's own docs go in through this lane, in process.

Each file is a document named by its path relative to the repository; the
second run finds every unchanged file's key committed and skips it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from lanewise.core.factory import Components
from lanewise.ingest.local import ingest_files, local_files
from lanewise.ingest.service import open_service
from rich.console import Console


def demo_paths(docs_dir: Path) -> list[Path]:
    paths = [docs_dir] if docs_dir.is_dir() else []
    readme = docs_dir.parent / "README.md"
    if readme.is_file():
        paths.insert(0, readme)
    return paths


async def ingest_docs(
    components: Components, docs_dir: Path, console: Console
) -> dict[str, Any] | None:
    if components.embedder() is None or components.vector_store() is None:
        console.print("[yellow]no embedder or vector store: the demo answers without sources[/]")
        return None
    # The demo shares the gateway's components (the embedded store has one owner): in process.
    service = open_service(components.settings, components, queue="embedded")
    try:
        files = local_files(demo_paths(docs_dir), docs_dir.parent)
        return await ingest_files(service, files, console, label="indexing docs")
    finally:
        await service.aclose()


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` from sync code, even when the caller already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="lanewise-demo-ingest")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def on_demo(components: Components, docs_dir: Path, console: Console) -> None:
    _run(ingest_docs(components, docs_dir, console))
