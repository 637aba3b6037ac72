"""The ingest tasks: parse → chunk → embed in batches → upsert → commit.

These functions are the tasks themselves; the embedded executor calls them
in process and the Celery app wraps them (same code, same semantics). Each
is idempotent, so a task redelivered after its worker died, or retried after
a transient failure, changes nothing that its first run already did:

* a chunk's id is a hash of (tenant, document id, chunk text, embedder id@version),
  so upserting it again overwrites it with itself;
* a document whose key (content hash, chunker, embedder) equals the committed
  one is skipped without being parsed; a document with the same key as
  another committed document of the tenant is skipped as its duplicate;
* a changed document's new chunks are upserted first, then the chunks of its
  previous version that the new one lacks are deleted, then the new chunk set
  becomes its manifest: no stale chunk survives, and there is no moment with
  neither version searchable;
* chunks that a changed document keeps are not embedded again;
* a document that fails (poison, or transient errors past the retry limit)
  gets a failure record with its reason, its added chunks are removed, and
  the rest of the job continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lanewise.core.errors import ConfigError
from lanewise.core.factory import Components
from lanewise.core.protocols import Chunker, Embedder, VectorStore
from lanewise.core.stages import timed_stage
from lanewise.core.types import Document, Principal
from lanewise.ingest.blobs import Blob
from lanewise.ingest.chunker import Piece, TokenChunker
from lanewise.ingest.errors import is_transient, reason_of
from lanewise.ingest.ids import chunk_id, document_key
from lanewise.ingest.loaders import Loader, Section, choose
from lanewise.ingest.settings import IngestSettings
from lanewise.ingest.state import Changes, IngestState
from lanewise.ingest.wiring import embed_batch, embedder_tag

log = logging.getLogger("lanewise.ingest")

DELETE_BATCH = 500
PARSE_CLAIM = "parse"
"""The commit claim of a parse task, and of a batch embedded inside it (see embed_inline)."""
PARSER_VERSION = "3"
"""Part of every document's key: bump it when a loader's output changes, and the next run
re-ingests documents whose bytes did not change."""

Payload = dict[str, Any]
T = TypeVar("T")


class Dispatcher(Protocol):
    """Where an embed batch goes: run now (embedded) or onto the ``embed`` queue (Celery)."""

    async def embed(self, payload: Payload) -> None: ...


def item_payload(
    *,
    job: str,
    tenant: str,
    index: int,
    name: str,
    path: Path,
    request_id: str = "",
    spooled: bool = False,
) -> Payload:
    """One file of a job: ``name`` is its document id, ``path`` where the bytes are
    (``spooled``: an upload's copy, removed once the item is finished)."""
    payload: Payload = {
        "job": job,
        "tenant": tenant,
        "item": index,
        "name": name,
        "path": str(path),
        "request_id": request_id,
    }
    if spooled:
        payload["spooled"] = True
    return payload


def pieces_of(chunker: Chunker, text: str, metadata: dict[str, Any]) -> Iterator[Piece]:
    """Any core ``Chunker``; the token chunker directly, others through a one-off Document."""
    if isinstance(chunker, TokenChunker):
        yield from chunker.pieces(text)
        return
    for chunk in chunker.chunk(Document(id="section", text=text, metadata=metadata)):
        start = text.find(chunk.text)
        yield Piece(chunk.text, start, start + len(chunk.text), len(chunk.text.split()))


def anchor(section: dict[str, Any]) -> str:
    """Where in the document a chunk is, for citations: ``#page=3``, ``#a-heading``."""
    if "page" in section:
        return f"#page={section['page']}"
    path = section.get("heading_path") or []
    if path:
        return "#" + (re.sub(r"[^a-z0-9]+", "-", str(path[-1]).lower()).strip("-") or "section")
    return ""


def chunker_key(chunker: Chunker) -> str:
    return chunker.config_key if isinstance(chunker, TokenChunker) else chunker.name


@dataclass
class IngestRuntime:
    settings: IngestSettings
    components: Components
    embedder: Embedder
    store: VectorStore
    chunker: Chunker
    loaders: Sequence[Loader]
    state: IngestState
    spool: Path | None = None
    """Where uploads are spooled (``data_dir/ingest/uploads``); only files in it are removed."""
    offload: bool = True
    """Run parsing and chunking in a thread, so that the event loop (the gateway's, the
    progress bar's) stays responsive; a worker child's loop runs one task and nothing
    else, so it runs them inline (a thread hop per section cost as much as the chunking)."""

    @property
    def hook(self) -> Any:
        return self.components.hook

    async def _cpu(self, work: Callable[..., T], *args: Any) -> T:
        if self.offload:
            return await asyncio.to_thread(work, *args)
        return work(*args)

    # parse ---------------------------------------------------------------------------------

    async def parse(self, item: Payload, dispatch: Dispatcher) -> None:
        """Parse and chunk one file, sending its new chunks in batches to ``dispatch``."""
        job, tenant, index, name = item["job"], item["tenant"], item["item"], item["name"]
        blob = Blob(name=name, path=Path(item["path"]))
        sent = 0
        progress: tuple[dict[str, str], int] | None = None
        with timed_stage(self.hook, item["request_id"], "ingest.parse", {"item": index}) as attrs:
            # The document's key first, so that resuming and the unchanged and duplicate
            # checks are one trip; a file that cannot be read fails the item below, unless
            # the item is finished (a redelivered task whose spooled upload is gone).
            unreadable: Exception | None = None
            key = ""
            try:
                key = document_key(
                    content_hash=await self._cpu(blob.content_hash),
                    chunker=f"parser{PARSER_VERSION}:{chunker_key(self.chunker)}",
                    embedder=embedder_tag(self.embedder),
                )
            except Exception as exc:
                unreadable = exc
            status, plan, done, current, twin = self.state.resume(
                job, tenant, name, index, key or None
            )
            if status is not None:
                attrs["outcome"] = "redelivered"
                return  # finished before
            if "expected" in plan and done >= int(plan["expected"]):
                # Redelivered after every batch was in: only the commit may be left to do.
                attrs["outcome"] = "redelivered"
                await self.maybe_commit(job, tenant, name, claim=PARSE_CLAIM, progress=(plan, done))
                return
            # Otherwise parse again from the start: the batches come out the same, and sending
            # one twice changes nothing, so a batch whose message was lost is sent again.
            try:
                if unreadable is not None:
                    raise unreadable
                if current == key:
                    attrs["outcome"] = "unchanged"
                    self._finish(job, tenant, index, "skipped", reason="unchanged")
                    return
                if twin and twin != name:
                    attrs["outcome"] = "duplicate"
                    self._finish(
                        job, tenant, index, "skipped", reason="duplicate", duplicate_of=twin
                    )
                    return
                chunks = 0
                # One batch behind: the last one is staged together with the plan.
                held: list[tuple[str, str, dict[str, Any], int]] | None = None
                async for batch in self.batches(blob, tenant):
                    if held is not None:
                        await self._send(item, held, sent, dispatch)
                        sent += 1
                    held = batch
                    chunks += len(batch)
                attrs["chunks"] = chunks
                fields = {
                    "item": index,
                    "expected": sent + (held is not None),
                    "key": key,
                    "chunks": chunks,
                }
                if held is None:
                    progress = self.state.plan(job, tenant, name, **fields)
                elif sent == 0 and current is None:
                    # A new document in one batch: nothing stored to look up, and the embed
                    # task stages, plans and commits it in one trip (IngestState.only_batch).
                    await dispatch.embed(self._payload(item, held, 0, plan=fields))
                    return
                else:
                    progress = await self._send(item, held, sent, dispatch, plan=fields)
                    sent += 1
            except Exception as exc:
                if is_transient(exc):
                    raise  # the executor retries the whole parse (idempotent)
                self.state.fail(job, tenant, name, reason_of(exc))
                progress = self.state.plan(job, tenant, name, item=index, expected=sent, chunks=0)
        await self.maybe_commit(job, tenant, name, claim=PARSE_CLAIM, progress=progress)

    async def fail_parse(self, item: Payload, exc: BaseException) -> None:
        """Transient errors outlived the retries: the item fails like a poison one."""
        job, tenant, name = item["job"], item["tenant"], item["name"]
        self.state.fail(job, tenant, name, f"gave up after retries: {reason_of(exc)}")
        sent = self.state.planned(job, tenant, name).get("sent", 0)
        progress = self.state.plan(job, tenant, name, item=item["item"], chunks=0, expected=sent)
        await self.maybe_commit(job, tenant, name, claim=PARSE_CLAIM, progress=progress)

    async def batches(self, blob: Blob, tenant: str) -> Any:
        """A document's chunks (id, text, metadata, tokens) in embed batches."""
        loader, mime = choose(self.loaders, blob)
        base = {
            "source": blob.name,
            "document_id": blob.name,
            "title": await self._cpu(loader.title, blob) or blob.name,
            "mime": mime,
            "size": blob.size,
        }
        tag = embedder_tag(self.embedder)
        batch: list[tuple[str, str, dict[str, Any], int]] = []
        # A text repeated inside the document has one id: it is embedded and stored once.
        # (Deterministic, so a redelivered parse cuts the very same batches.)
        seen: set[str] = set()
        number = 0
        sections = loader.sections(blob)
        while True:
            # A section is bounded (a block, a page, a heading): so is the work per call.
            cut = await self._cpu(self._next_pieces, sections)
            if cut is None:
                break
            section, pieces = cut
            for piece in pieces:
                cid = chunk_id(tenant=tenant, document_id=blob.name, text=piece.text, embedder=tag)
                if cid in seen:
                    continue
                seen.add(cid)
                meta = {
                    **base,
                    **section.metadata,
                    "source": blob.name + anchor(section.metadata),
                    "chunk": number,
                    "start": piece.start,
                    "end": piece.end,
                }
                batch.append((cid, piece.text, meta, piece.tokens))
                number += 1
                if len(batch) >= self.settings.embed_batch:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _next_pieces(self, sections: Iterator[Section]) -> tuple[Section, list[Piece]] | None:
        section = next(sections, None)
        if section is None:
            return None
        return section, list(pieces_of(self.chunker, section.text, section.metadata))

    async def _send(
        self,
        item: Payload,
        batch: list[tuple[str, str, dict[str, Any], int]],
        number: int,
        dispatch: Dispatcher,
        plan: dict[str, Any] | None = None,
    ) -> tuple[dict[str, str], int]:
        """Stage a batch (with the document's ``plan`` when it is the last) and send it to
        be embedded; the document's progress after staging.

        The plan may be in before the last batch is sent: a parse that dies in between
        is redelivered, finds fewer batches done than expected and sends them all again."""
        job, tenant, name = item["job"], item["tenant"], item["name"]
        ids = [b[0] for b in batch]
        known, planned, done = self.state.stage(job, tenant, name, ids, sent=number + 1, plan=plan)
        new = [b for b, stored in zip(batch, known, strict=True) if not stored]
        if not new:  # nothing to embed: the batch is done as soon as it is staged
            _, planned, done = self.state.batch_done(job, tenant, name, number)
            return planned, done
        payload = self._payload(item, new, number)
        if number == 0 and plan is not None:
            payload["only"] = True  # the document's one batch: it claims the commit at once
        await dispatch.embed(payload)
        return planned, done

    @staticmethod
    def _payload(
        item: Payload,
        batch: list[tuple[str, str, dict[str, Any], int]],
        number: int,
        plan: dict[str, Any] | None = None,
    ) -> Payload:
        """An embed task's payload; with the document's ``plan`` when the task stages it."""
        payload: Payload = {
            "job": item["job"],
            "tenant": item["tenant"],
            "name": item["name"],
            "batch": number,
            "request_id": item["request_id"],
            "ids": [b[0] for b in batch],
            "texts": [b[1] for b in batch],
            "metadata": [b[2] for b in batch],
        }
        if plan is not None:
            payload["plan"] = plan
        return payload

    # embed ---------------------------------------------------------------------------------

    async def embed(self, payload: Payload) -> None:
        """Embed one batch and upsert it; the last batch of a document commits it."""
        job, tenant, name = payload["job"], payload["tenant"], payload["name"]
        attrs = {"batch": payload["batch"], "chunks": len(payload["ids"])}
        with timed_stage(self.hook, payload["request_id"], "ingest.embed", attrs):
            try:
                vectors = await embed_batch(
                    self.components,
                    self.embedder,
                    payload["texts"],
                    principal=Principal(tenant=tenant),
                    request_id=payload["request_id"],
                )
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self.fail_batch(payload, exc)
                return
            await self.store.upsert(
                tenant=tenant,
                ids=payload["ids"],
                vectors=vectors,
                texts=payload["texts"],
                metadata=payload["metadata"],
            )
        claim, changes = claim_of(payload), None
        if "plan" in payload:  # a new document's only batch, sent unstaged
            only = self.state.only_batch(
                job, tenant, name, claim, ids=payload["ids"], plan=payload["plan"]
            )
            if only.outcome == "committed":
                self._finished(job, tenant, only.job_done, only.payload)
            elif only.outcome == "left":
                await self.maybe_commit(job, tenant, name, claim=claim)
            return
        if payload.get("only"):
            plan, done, changes = self.state.only_batch_done(job, tenant, name, claim)
        else:
            _, plan, done = self.state.batch_done(job, tenant, name, payload["batch"])
        await self.maybe_commit(
            job, tenant, name, claim=claim, progress=(plan, done), changes=changes
        )

    async def fail_batch(self, payload: Payload, exc: BaseException) -> None:
        """A batch that can never be embedded fails its document (and only its document)."""
        job, tenant, name = payload["job"], payload["tenant"], payload["name"]
        if "plan" in payload:  # sent unstaged: stage it, so that its commit can fail it
            self.state.stage(job, tenant, name, payload["ids"], sent=1, plan=payload["plan"])
        self.state.fail(job, tenant, name, reason_of(exc))
        _, plan, done = self.state.batch_done(job, tenant, name, payload["batch"])
        await self.maybe_commit(job, tenant, name, claim=claim_of(payload), progress=(plan, done))

    # commit --------------------------------------------------------------------------------

    async def maybe_commit(
        self,
        job: str,
        tenant: str,
        name: str,
        *,
        claim: str,
        progress: tuple[dict[str, str], int] | None = None,
        changes: Changes | None = None,
    ) -> None:
        """Commit the document once all its batches are in; exactly one task does it.

        ``progress``: the plan and batch count the caller read after its last write (it
        saves a round trip); read here when not given. ``changes``: what the caller's
        claim, made in that same trip, returned (claimed here when None)."""
        plan, done = progress or self.state.progress(job, tenant, name)
        if "expected" not in plan or "item" not in plan:
            return  # parse has not finished sending batches, or the commit is over
        index = int(plan["item"])
        if done < int(plan["expected"]):
            return
        # Two batches finishing together both get here: the first claim wins, and the
        # same task redelivered (its worker died mid-commit) may finish what it started.
        if changes is None:
            changes = self.state.claim_commit(job, tenant, name, claim)
        if changes is None:
            return
        await self._commit(job, tenant, name, index, plan, changes)

    async def _commit(
        self,
        job: str,
        tenant: str,
        name: str,
        index: int,
        plan: dict[str, str],
        changes: Changes,
    ) -> None:
        done = (tenant, name)
        if "failed" in plan:
            await self._delete(tenant, sorted(changes.added))
            self._finish(job, tenant, index, "failed", drop=done, reason=plan["failed"])
            return
        chunks = int(plan.get("chunks", 0))
        if chunks == 0 or changes.staged:
            # (else an earlier run of this commit got past the switch-over: nothing is stale)
            await self._delete(tenant, sorted(changes.stale))
        self._finished(
            job,
            tenant,
            *self.state.commit(
                job, tenant, name, changes, key=plan["key"], source=name, chunks=chunks, item=index
            ),
        )

    async def _delete(self, tenant: str, ids: list[str]) -> None:
        for start in range(0, len(ids), DELETE_BATCH):
            await self.store.delete(tenant=tenant, ids=ids[start : start + DELETE_BATCH])

    def _finish(
        self,
        job: str,
        tenant: str,
        index: int,
        status: str,
        *,
        drop: tuple[str, str] | None = None,
        **details: Any,
    ) -> None:
        self._finished(
            job, tenant, *self.state.finish_item(job, index, status, drop=drop, **details)
        )

    def _finished(self, job: str, tenant: str, job_done: bool, payload: Payload | None) -> None:
        """After an item's outcome is recorded (``job_done``: it was the job's last one)."""
        # The upload goes before the job is marked complete: whoever sees it complete
        # sees this item's spooled copy gone.
        self._unspool(payload)
        if job_done:
            version = self.state.complete_job(job, tenant)
            log.info("ingest job %s completed; index version %d", job, version)

    def _unspool(self, payload: Payload | None) -> None:
        """Remove a finished item's spooled upload (a redelivered task returns before reading
        it: the item is finished); the job's spool directory goes with its last file."""
        if self.spool is None or not payload or not payload.get("spooled"):
            return
        path = Path(payload["path"]).resolve()
        root = self.spool.resolve()
        if not path.is_relative_to(root) or path.parent == root:
            return  # never a file outside the spool, nor the spool itself
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty yet: another item's file is there
            path.parent.rmdir()


def claim_of(payload: Payload) -> str:
    """The commit claim of an embed task: its batch's, or its parse task's when it runs
    inside it (the one task a crash redelivers, which must be able to finish the commit)."""
    return str(payload.get("claim") or f"batch-{payload['batch']}")


def only_batch(payload: Payload) -> bool:
    """Whether an embed payload is its document's one batch (it claims the commit at once)."""
    return "plan" in payload or bool(payload.get("only"))


async def embed_inline(rt: IngestRuntime, payload: Payload) -> None:
    """An embed task run inside the parse task that cut its batch, with its retries.

    It claims the document's commit as the parse: if the process dies after the claim and
    before the commit, the parse message is what comes back (no embed message exists), and
    a redelivered parse may finish only a commit claimed under its own name."""
    await run_embed(rt, {**payload, "claim": PARSE_CLAIM})


async def with_retries(
    run: Callable[[], Awaitable[None]],
    *,
    settings: IngestSettings,
    give_up: Callable[[BaseException], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``run``; retry transient errors with exponential backoff and full jitter."""
    attempt = 0
    while True:
        try:
            await run()
            return
        except Exception as exc:
            if not is_transient(exc) or attempt >= settings.max_retries:
                await give_up(exc)
                return
            await sleep(backoff_s(attempt, settings))
            attempt += 1


async def run_parse(rt: IngestRuntime, item: Payload, dispatch: Dispatcher) -> None:
    """A parse task with its retries: what every executor runs for one file."""
    await with_retries(
        lambda: rt.parse(item, dispatch),
        settings=rt.settings,
        give_up=lambda exc: rt.fail_parse(item, exc),
    )


async def run_embed(rt: IngestRuntime, payload: Payload) -> None:
    """An embed task with its retries."""
    await with_retries(
        lambda: rt.embed(payload),
        settings=rt.settings,
        give_up=lambda exc: rt.fail_batch(payload, exc),
    )


def backoff_s(attempt: int, settings: IngestSettings) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**attempt)
    return random.uniform(0, ceiling)


def build_runtime(
    components: Components,
    settings: IngestSettings,
    state: IngestState,
    loaders: Sequence[Loader],
    spool: Path | None = None,
) -> IngestRuntime:
    embedder, store = components.embedder(), components.vector_store()
    if embedder is None or store is None:
        raise ConfigError(
            "ingest needs an embedder and a vector store: install lanewise-retrieval or "
            "configure [retrieval.embedder] and [retrieval.vector_store]"
        )
    chunker = components.chunker() or TokenChunker()
    return IngestRuntime(settings, components, embedder, store, chunker, loaders, state, spool)
