"""The pipeline in the embedded executor, on the real embedded store (SQLite + faiss).

The no-op embedder (a vector drawn from a hash of each text, no model) keeps these
fast; the chunk sets are read back from the store through core's VectorStore contract
and compared exactly.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lanewise.ingest.factories import NoopEmbedder
from lanewise.ingest.local import local_files
from lanewise.ingest.service import IngestService, open_service
from lanewise.ingest.wiring import open_components

from .helpers import stored

DIM = 8
TENANT = "acme"


@pytest.fixture
def settings(lanewise_settings: Any) -> Any:
    return lanewise_settings(
        retrieval={"embedder": {"kind": "noop", "dimension": DIM}},
        ingest={"chunker": {"kind": "tokens", "size": 12, "overlap": 3, "tokenizer": "words"}},
    )


@pytest.fixture
async def lane(settings: Any) -> AsyncIterator[tuple[Any, IngestService]]:
    parts, close = open_components(settings)
    service = open_service(settings, parts)
    try:
        yield parts, service
    finally:
        await service.aclose()
        await close()


async def run(service: IngestService, root: Path, *paths: Path, tenant: str = TENANT) -> Any:
    job = await service.submit(tenant=tenant, files=local_files(paths or [root], root), wait=True)
    view = service.job(job, tenant=tenant)
    assert view is not None
    assert view.status == "completed"
    return view


async def test_mixed_corpus_poison_fails_alone_and_reingest_is_a_noop(
    lane: tuple[Any, IngestService], corpus: Path
) -> None:
    parts, service = lane
    store = parts.vector_store()
    first = await run(service, corpus)
    assert (first.done, first.skipped, first.failed) == (5, 0, 2)
    reasons = {f["name"]: f["reason"] for f in first.failures}
    assert "not a readable PDF" in reasons["broken.pdf"]
    assert "no loader reads application/octet-stream" in reasons["photo.bin"]
    chunks = await stored(store, TENANT, DIM)
    assert len(chunks) == first.chunks_added > 0
    for name in ("guide.md", "notes.txt", "page.html", "records.jsonl", "manual.pdf"):
        assert await stored(store, TENANT, DIM, document_id=name), name
    assert not await stored(store, TENANT, DIM, document_id="broken.pdf")
    pdf = await stored(store, TENANT, DIM, document_id="manual.pdf")
    assert any("budgets" in t for t in pdf.values())
    assert any("tokens" in t for t in pdf.values())
    version = first.index_version

    second = await run(service, corpus)
    assert (second.done, second.skipped, second.failed) == (0, 5, 2)
    assert second.chunks_added == second.chunks_removed == 0
    assert await stored(store, TENANT, DIM) == chunks  # the very same chunk set
    assert second.index_version == version + 1  # a completed job bumps the index version


async def test_a_changed_document_replaces_its_chunks(
    lane: tuple[Any, IngestService], corpus: Path
) -> None:
    parts, service = lane
    store = parts.vector_store()
    await run(service, corpus)
    before = await stored(store, TENANT, DIM)
    old_guide = await stored(store, TENANT, DIM, document_id="guide.md")
    guide = corpus / "guide.md"
    # The first section stays, the second is rewritten: its old chunks must all go.
    guide.write_text(
        guide.read_text().split("## Ingest")[0] + "## Ingest\n\nWorkers write vectors in batches.\n"
    )
    job = await run(service, corpus)
    assert (job.done, job.skipped) == (1, 4)
    new_guide = await stored(store, TENANT, DIM, document_id="guide.md")
    assert not any("memory-bound" in t for t in new_guide.values())  # no stale chunk survives
    assert any("vectors in batches" in t for t in new_guide.values())
    kept = set(old_guide) & set(new_guide)
    assert kept
    assert all("deployed separately" in new_guide[i] for i in kept)
    assert job.chunks_removed == len(set(old_guide) - set(new_guide))
    assert job.chunks_added == len(set(new_guide) - set(old_guide))  # kept ones not re-embedded
    others = {i: t for i, t in before.items() if i not in old_guide}
    after = await stored(store, TENANT, DIM)
    assert {i: t for i, t in after.items() if i not in new_guide} == others


async def test_identical_documents_are_stored_once_and_tenants_are_apart(
    lane: tuple[Any, IngestService], corpus: Path
) -> None:
    parts, service = lane
    store = parts.vector_store()
    shutil.copy(corpus / "notes.txt", corpus / "notes-copy.txt")
    job = await run(service, corpus, corpus / "notes.txt", corpus / "notes-copy.txt")
    assert (job.done, job.skipped) == (1, 1)
    assert job.items[1]["duplicate_of"] == "notes.txt"
    assert not await stored(store, TENANT, DIM, document_id="notes-copy.txt")
    # Another tenant's copy is its own document: ids are per tenant, and so are the stores.
    other = await run(service, corpus, corpus / "notes.txt", tenant="globex")
    assert other.done == 1
    mine = await stored(store, TENANT, DIM)
    theirs = await stored(store, "globex", DIM)
    assert sorted(mine.values()) == sorted(theirs.values())
    assert not set(mine) & set(theirs)
    assert service.job(job.id, tenant="globex") is None  # a job is visible to its tenant only


class _Refusing(NoopEmbedder):
    """The no-op embedder, refusing texts with ``refuse`` in them (a model's own refusal,
    not transient) and failing the first ``flaky`` calls with a connection error."""

    def __init__(self, flaky: int = 0) -> None:
        super().__init__(DIM)
        self.flaky = flaky

    async def embed(self, texts: Any) -> list[list[float]]:
        if self.flaky:
            self.flaky -= 1
            raise ConnectionError("the embedder's server went away")
        if any("refuse" in t for t in texts):
            raise ValueError("this text is refused")
        return await super().embed(texts)


async def test_a_new_documents_only_batch_that_cannot_be_embedded_fails_it_alone(
    lane: tuple[Any, IngestService], tmp_path: Path
) -> None:
    # A new one-batch document is sent to be embedded unstaged; its embed task stages it.
    # When that batch fails, the document fails alone, with its reason, and nothing of it
    # is stored or recorded; a transient failure is retried and changes nothing.
    parts, service = lane
    store = parts.vector_store()
    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nThese words are fine to embed.\n")
    (root / "bad.md").write_text("# Bad\n\nThe model will refuse this one.\n")
    runtime = service.executor.runtime
    runtime.embedder = _Refusing(flaky=1)
    runtime.settings = runtime.settings.model_copy(update={"retry_backoff_s": 0.01})
    job = await run(service, root)
    assert (job.done, job.failed, job.chunks_added) == (1, 1, 1)
    assert [f["name"] for f in job.failures] == ["bad.md"]
    assert "this text is refused" in job.failures[0]["reason"]
    assert list((await stored(store, TENANT, DIM)).values()) == [
        "Good: These words are fine to embed."
    ]
    assert service.state.document(TENANT, "bad.md") == {}  # never committed
    # Fixed, it goes in; the good one is unchanged and skipped unread.
    runtime.embedder = _Refusing()
    (root / "bad.md").write_text("# Bad\n\nNow it is fine too.\n")
    again = await run(service, root)
    assert (again.done, again.skipped, again.failed, again.chunks_added) == (1, 1, 0, 1)
    assert len(await stored(store, TENANT, DIM)) == 2
