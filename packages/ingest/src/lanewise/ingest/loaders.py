"""Loaders: bytes in, :class:`Section` s out (text plus where it came from).

A section is the unit a chunker never crosses: a Markdown or HTML heading's
body, a PDF page, a JSONL record, a block of a large text file. Text files
are read as streams, so a 200 MB file never sits in memory whole.
"""

from __future__ import annotations

import codecs
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, BinaryIO, Protocol, runtime_checkable

from lanewise.core.types import Document
from lanewise.ingest import sniff
from lanewise.ingest.blobs import Blob
from lanewise.ingest.errors import CorruptDocument, UnsupportedFormat


@dataclass(frozen=True)
class Section:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Loader(Protocol):
    """A loader for some mime types (and, for core's ``DocumentLoader``, suffixes)."""

    name: str
    mimes: tuple[str, ...]
    suffixes: tuple[str, ...]

    def title(self, blob: Blob) -> str | None: ...

    def sections(self, blob: Blob) -> Iterator[Section]: ...


class _AsDocuments:
    """Core's ``DocumentLoader.load``: the sections as documents, for callers outside the lane."""

    name: str

    def sections(self, blob: Blob) -> Iterator[Section]:
        raise NotImplementedError

    def load(self, source: str, data: bytes) -> Iterable[Document]:
        blob = Blob(name=source, data=data)
        for n, section in enumerate(self.sections(blob)):
            yield Document(
                id=f"{source}#{n}", text=section.text, source=source, metadata=section.metadata
            )


class TextLoader(_AsDocuments):
    """Plain text, decoded as UTF-8 (invalid bytes replaced), in blocks cut at line breaks."""

    name = "text"
    mimes = (sniff.TEXT,)
    suffixes = (".txt", ".text", ".rst", ".log", ".csv")

    def __init__(self, block_bytes: int = 256 * 1024) -> None:
        self.block_bytes = block_bytes

    def title(self, blob: Blob) -> str | None:
        return PurePath(blob.name).stem or None

    def sections(self, blob: Blob) -> Iterator[Section]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        carry = ""
        block = 0
        offset = 0  # characters emitted before this block
        with blob.open() as f:
            while True:
                raw = f.read(self.block_bytes)
                text = carry + decoder.decode(raw, final=not raw)
                if not raw:
                    if text.strip():
                        yield Section(text, {"block": block, "offset": offset})
                    return
                cut = _last_break(text)
                if cut <= 0:
                    carry = text
                    if len(carry) < 4 * self.block_bytes:
                        continue
                    cut = len(carry)  # one enormous line: cut it anyway, memory stays bounded
                piece, carry = text[:cut], text[cut:]
                if piece.strip():
                    yield Section(piece, {"block": block, "offset": offset})
                    block += 1
                offset += len(piece)


def _last_break(text: str) -> int:
    """Where to cut a block: after its last paragraph break, else its last line break."""
    for sep in ("\n\n", "\n"):
        at = text.rfind(sep)
        if at > len(text) // 2:
            return at + len(sep)
    at = text.rfind("\n")
    return at + 1 if at >= 0 else -1


HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


class MarkdownLoader(_AsDocuments):
    """Markdown split at headings; each section keeps its heading path (``A > B``)."""

    name = "markdown"
    mimes = (sniff.MARKDOWN,)
    suffixes = (".md", ".markdown", ".mdx")

    def title(self, blob: Blob) -> str | None:
        for section in self.sections(blob):
            path = section.metadata.get("heading_path") or []
            if path:
                return str(path[0])
        return PurePath(blob.name).stem or None

    def sections(self, blob: Blob) -> Iterator[Section]:
        with blob.open() as f:
            text = f.read().decode("utf-8", errors="replace")
        path: list[str] = []
        lines: list[str] = []
        fenced = False
        for line in text.splitlines(keepends=True):
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            match = None if fenced else HEADING.match(line.rstrip("\n"))
            if match is None:
                lines.append(line)
                continue
            yield from _section("".join(lines), path)
            level, heading = len(match.group(1)), match.group(2)
            path = [*path[: level - 1], heading]
            lines = []
        yield from _section("".join(lines), path)


def _section(text: str, path: Sequence[str]) -> Iterator[Section]:
    if not text.strip():
        return
    meta: dict[str, Any] = {"heading_path": list(path)}
    if path:
        meta["heading"] = " > ".join(path)
        # The heading's words (not its '#'s) lead into the section's first paragraph: they
        # help it match a query, and a quoted chunk reads as a sentence, not a bare title.
        text = f"{path[-1]}: {text.lstrip()}"
    yield Section(text, meta)


_HTML_BLOCKS = "h1,h2,h3,h4,h5,h6,p,li,pre,blockquote,td,th,dt,dd,figcaption"
_HTML_DROP = "script,style,noscript,template,nav,header,footer,aside,form,svg"


class HtmlLoader(_AsDocuments):
    """HTML's readable text (selectolax/lexbor), split at its headings like Markdown."""

    name = "html"
    mimes = (sniff.HTML,)
    suffixes = (".html", ".htm", ".xhtml")

    def _tree(self, blob: Blob) -> Any:
        from selectolax.lexbor import LexborHTMLParser

        with blob.open() as f:
            return LexborHTMLParser(f.read().decode("utf-8", errors="replace"))

    def title(self, blob: Blob) -> str | None:
        node = self._tree(blob).css_first("title")
        text = node.text(strip=True) if node is not None else ""
        return text or PurePath(blob.name).stem or None

    def sections(self, blob: Blob) -> Iterator[Section]:
        tree = self._tree(blob)
        for node in tree.css(_HTML_DROP):
            node.decompose()
        root = tree.body or tree.root
        if root is None:
            return
        path: list[str] = []
        paragraphs: list[str] = []
        for node in root.css(_HTML_BLOCKS):
            if _inside_block(node):
                continue  # its text is already part of the enclosing block's
            text = " ".join(node.text(deep=True, separator=" ").split())
            if not text:
                continue
            tag = node.tag or ""
            if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
                yield from _section("\n\n".join(paragraphs), path)
                path = [*path[: int(tag[1]) - 1], text]
                paragraphs = []
            else:
                paragraphs.append(text)
        yield from _section("\n\n".join(paragraphs), path)


_BLOCK_TAGS = frozenset(_HTML_BLOCKS.split(","))


def _inside_block(node: Any) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in _BLOCK_TAGS:
            return True
        parent = parent.parent
    return False


class PdfLoader(_AsDocuments):
    """PDF text per page (pypdf); a file that does not parse is a corrupt document."""

    name = "pdf"
    mimes = (sniff.PDF,)
    suffixes = (".pdf",)

    def _reader(self, blob: Blob, stream: BinaryIO) -> Any:
        from pypdf import PdfReader

        if not blob.head().startswith(b"%PDF-"):
            raise CorruptDocument(f"{blob.name} is named like a PDF but has no PDF header")
        return PdfReader(stream, strict=False)

    def title(self, blob: Blob) -> str | None:
        try:
            with blob.open() as f, _pdf_errors(blob):
                meta = self._reader(blob, f).metadata
                title = getattr(meta, "title", None) if meta is not None else None
        except CorruptDocument:
            title = None
        return str(title) if title else PurePath(blob.name).stem or None

    def sections(self, blob: Blob) -> Iterator[Section]:
        with blob.open() as f, _pdf_errors(blob):
            reader = self._reader(blob, f)
            for n in range(len(reader.pages)):
                text = reader.pages[n].extract_text() or ""
                if text.strip():
                    yield Section(text, {"page": n + 1})


@contextmanager
def _pdf_errors(blob: Blob) -> Iterator[None]:
    """pypdf's many ways of failing on a broken file, as one CorruptDocument."""
    from pypdf.errors import PyPdfError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pypdf warns about every flaw it repairs
        try:
            yield
        except CorruptDocument:
            raise
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise CorruptDocument(f"{blob.name} is not a readable PDF: {exc}") from exc


class JsonLinesLoader(_AsDocuments):
    """JSON Lines (or one JSON array/object): ``text_field`` is the text, the rest metadata."""

    name = "jsonl"
    mimes = (sniff.JSONL, sniff.JSON)
    suffixes = (".jsonl", ".ndjson", ".json")

    def __init__(
        self, text_field: str = "text", metadata_fields: Sequence[str] | None = None
    ) -> None:
        self.text_field = text_field
        self.metadata_fields = tuple(metadata_fields) if metadata_fields is not None else None

    def title(self, blob: Blob) -> str | None:
        return PurePath(blob.name).stem or None

    def sections(self, blob: Blob) -> Iterator[Section]:
        for n, record in enumerate(self._records(blob)):
            if not isinstance(record, dict):
                raise CorruptDocument(f"{blob.name}: record {n + 1} is not a JSON object")
            text = record.get(self.text_field)
            if not isinstance(text, str):
                raise CorruptDocument(
                    f"{blob.name}: record {n + 1} has no string field {self.text_field!r} "
                    "(set [ingest.loaders.jsonl] text_field)"
                )
            if text.strip():
                yield Section(text, {"record": n + 1, **self._metadata(record)})

    def _metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        names = self.metadata_fields
        if names is None:
            names = tuple(k for k in record if k != self.text_field)
        return {
            k: record[k]
            for k in names
            if k in record and isinstance(record[k], str | int | float | bool)
        }

    def _records(self, blob: Blob) -> Iterator[Any]:
        head = blob.head().lstrip()
        if head[:1] == b"[" or blob.mime() == sniff.JSON:
            with blob.open() as f:
                try:
                    value = json.loads(f.read())
                except ValueError as exc:
                    raise CorruptDocument(f"{blob.name} is not valid JSON: {exc}") from exc
            yield from value if isinstance(value, list) else [value]
            return
        with blob.open() as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise CorruptDocument(f"{blob.name}: line {n} is not JSON: {exc}") from exc


def builtin_loaders(
    *, block_bytes: int = 256 * 1024, text_field: str = "text"
) -> list[_AsDocuments]:
    return [
        TextLoader(block_bytes),
        MarkdownLoader(),
        HtmlLoader(),
        PdfLoader(),
        JsonLinesLoader(text_field),
    ]


def choose(loaders: Iterable[Loader], blob: Blob) -> tuple[Loader, str]:
    """The loader for ``blob``'s sniffed content type, or :class:`UnsupportedFormat`."""
    mime = blob.mime()
    for loader in loaders:
        if mime in loader.mimes:
            return loader, mime
    raise UnsupportedFormat(
        f"{blob.name}: no loader reads {mime} content; supported: text, Markdown, HTML, PDF, "
        "JSON/JSONL"
    )
