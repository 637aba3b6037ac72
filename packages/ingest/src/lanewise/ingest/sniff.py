"""Content sniffing: what a file is, from its first bytes first and its name second.

A ``.txt`` that is really a PDF is read as a PDF; a ``.pdf`` that is not one
is reported as corrupt rather than read as text. Binary content that no
loader reads is refused instead of being indexed as noise.
"""

from __future__ import annotations

import json
from pathlib import PurePath

SNIFF_BYTES = 8192

PDF = "application/pdf"
HTML = "text/html"
MARKDOWN = "text/markdown"
JSONL = "application/jsonl"
JSON = "application/json"
TEXT = "text/plain"
BINARY = "application/octet-stream"

_BY_SUFFIX = {
    ".pdf": PDF,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".mdx": MARKDOWN,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
    ".json": JSON,
    ".txt": TEXT,
    ".text": TEXT,
    ".rst": TEXT,
    ".csv": TEXT,
    ".log": TEXT,
}
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<article", b"<p>", b"<div")


def sniff(name: str, head: bytes) -> str:
    """The mime type of a file called ``name`` whose content starts with ``head``."""
    suffix = PurePath(name).suffix.lower()
    by_name = _BY_SUFFIX.get(suffix)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF-"):
        return PDF
    if by_name == PDF:
        return PDF  # claims to be a PDF and is not: the PDF loader reports it as corrupt
    if _looks_binary(head):
        return BINARY
    lowered = stripped[:512].lower()
    if any(lowered.startswith(m) for m in _HTML_MARKERS):
        return HTML
    if by_name in {JSON, JSONL} or stripped[:1] in {b"{", b"["}:
        kind = _json_kind(stripped)
        if kind is not None:
            return kind
    if by_name is not None:
        return by_name
    return TEXT


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is still text.
        return exc.start < len(head) - 4
    return False


def _json_kind(stripped: bytes) -> str | None:
    first_line = stripped.split(b"\n", 1)[0]
    try:
        json.loads(first_line)
    except ValueError:
        pass
    else:
        if stripped[:1] == b"{" and b"\n" in stripped.strip():
            return JSONL
        return JSON
    if stripped[:1] in {b"{", b"["}:
        return JSON  # one JSON value over several lines (or cut by the sniff window)
    return None
