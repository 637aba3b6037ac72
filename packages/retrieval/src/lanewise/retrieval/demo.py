"""``lanewise demo``: index the project's own Markdown into the configured store.

Until the ingest lane's loaders and chunkers take over, Markdown is split
here, directly: on headings first, then on blank lines, packing paragraphs
into chunks of at most ``MAX_CHARS``. Chunk ids are ``<path>#<n>`` and every
run first deletes the previous run's chunks (``origin = "demo"``), so running
the demo twice leaves one copy of each document, not two.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanewise.core.factory import Components
from lanewise.core.types import ANONYMOUS
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

MAX_CHARS = 1200
BATCH = 16
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class MarkdownChunk:
    heading: str
    text: str


def split_markdown(text: str, *, max_chars: int = MAX_CHARS) -> list[MarkdownChunk]:
    """Sections by heading, then paragraphs packed up to ``max_chars`` (code fences kept whole)."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            # The heading's words stay in the chunk (they help it match), its '#'s do not;
            # it leads into the first paragraph instead of standing as a sentence alone.
            sections.append((match.group(2), [match.group(2) + ":"]))
        else:
            sections[-1][1].append(line)
    chunks: list[MarkdownChunk] = []
    for heading, lines in sections:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
        current = ""
        for para in paragraphs:
            heading_only = bool(heading) and current == heading + ":"
            if current and not heading_only and len(current) + len(para) + 2 > max_chars:
                chunks.append(MarkdownChunk(heading, current))
                current = ""
            sep = " " if heading_only else "\n\n"
            current = f"{current}{sep}{para}" if current else para
            while len(current) > max_chars:  # one giant paragraph: cut it
                chunks.append(MarkdownChunk(heading, current[:max_chars]))
                current = current[max_chars:]
        if current and not (heading and current == heading + ":"):
            chunks.append(MarkdownChunk(heading, current))
    return chunks


def demo_files(docs_dir: Path) -> list[Path]:
    files = sorted(docs_dir.rglob("*.md")) if docs_dir.is_dir() else []
    readme = docs_dir.parent / "README.md"
    if readme.is_file():
        files.insert(0, readme)
    return files


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from sync code, even when a loop is already running."""
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

    thread = threading.Thread(target=target, name="lanewise-demo-index")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


async def index_markdown(components: Components, docs_dir: Path, console: Console) -> int:
    embedder = components.embedder()
    store = components.vector_store()
    if embedder is None or store is None:
        console.print("[yellow]no embedder or vector store: the demo answers without sources[/]")
        return 0
    tenant = ANONYMOUS.tenant
    root = docs_dir.parent
    items: list[tuple[str, str, dict[str, Any]]] = []
    for path in demo_files(docs_dir):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        for n, chunk in enumerate(split_markdown(path.read_text(encoding="utf-8"))):
            source = f"{rel}#{_slug(chunk.heading)}" if chunk.heading else rel
            meta = {"source": source, "path": rel, "heading": chunk.heading, "origin": "demo"}
            items.append((f"{rel}#{n}", chunk.text, meta))
    await store.delete(tenant=tenant, filter={"field": "origin", "eq": "demo"})
    with Progress(
        TextColumn("[bold]indexing docs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[what]}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("index", total=len(items), what="")
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            vectors = await embedder.embed([text for _, text, _ in batch])
            await store.upsert(
                tenant=tenant,
                ids=[i for i, _, _ in batch],
                vectors=vectors,
                texts=[text for _, text, _ in batch],
                metadata=[meta for _, _, meta in batch],
            )
            progress.update(task, advance=len(batch), what=batch[-1][2]["path"])
    console.print(f"indexed {len(items)} chunks from {len(demo_files(docs_dir))} Markdown files")
    return len(items)


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def on_demo(components: Components, docs_dir: Path, console: Console) -> None:
    _run(index_markdown(components, docs_dir, console))
