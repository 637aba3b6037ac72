"""Loaders and content sniffing on real files (a real PDF, HTML, JSONL, a binary)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.ingest import sniff
from lanewise.ingest.blobs import Blob
from lanewise.ingest.errors import CorruptDocument, UnsupportedFormat
from lanewise.ingest.loaders import TextLoader, builtin_loaders, choose

from .conftest import make_pdf


def sections(path: Path) -> list[tuple[str, dict]]:
    blob = Blob(name=path.name, path=path)
    loader, _ = choose(builtin_loaders(), blob)
    return [(s.text, s.metadata) for s in loader.sections(blob)]


def test_content_decides_not_the_name(tmp_path: Path) -> None:
    assert sniff.sniff("x.txt", make_pdf(["hi"])) == sniff.PDF
    assert sniff.sniff("page", b"<!DOCTYPE html><html>") == sniff.HTML
    assert sniff.sniff("data", b'{"text": "a"}\n{"text": "b"}\n') == sniff.JSONL
    assert sniff.sniff("x.md", b"\x00\x01\x02") == sniff.BINARY
    assert sniff.sniff("README", b"# Title\n") == sniff.TEXT
    assert sniff.sniff("doc.md", b"# Title\n") == sniff.MARKDOWN


def test_markdown_sections_carry_their_heading_path(corpus: Path) -> None:
    got = sections(corpus / "guide.md")
    assert [m["heading_path"] for _, m in got] == [["Guide"], ["Guide", "Ingest"]]
    assert got[1][0].startswith("Ingest: Parsing is memory-bound")


def test_html_drops_chrome_and_splits_at_headings(corpus: Path) -> None:
    got = sections(corpus / "page.html")
    assert [m["heading"] for _, m in got] == ["Operations", "Operations > Alerts"]
    text = " ".join(t for t, _ in got)
    assert "menu" not in text
    assert "p{}" not in text
    assert "Queue depth above the limit pages someone." in text
    assert got[0][0] == "Operations: Workers restart after a crash."


def test_pdf_pages_and_a_corrupt_pdf(corpus: Path) -> None:
    got = sections(corpus / "manual.pdf")
    assert [m["page"] for _, m in got] == [1, 2]
    assert "budgets" in got[0][0]
    assert "tokens" in got[1][0]
    with pytest.raises(CorruptDocument, match="not a readable PDF"):
        sections(corpus / "broken.pdf")


def test_jsonl_text_and_metadata_fields(corpus: Path) -> None:
    got = sections(corpus / "records.jsonl")
    assert got == [
        ("First record text.", {"record": 1, "lang": "en", "n": 0}),
        ("Second record text.", {"record": 2, "lang": "en", "n": 1}),
    ]


def test_binary_is_unsupported(corpus: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="no loader reads application/octet-stream"):
        sections(corpus / "photo.bin")


@given(st.text(min_size=0, max_size=3000), st.sampled_from([4096, 5000]))
def test_text_blocks_reassemble_the_file_exactly(text: str, block: int) -> None:
    data = text.encode("utf-8")
    blob = Blob(name="t.txt", data=data)
    pieces = list(TextLoader(block).sections(blob))
    joined = "".join(p.text for p in pieces)
    # Only whitespace-only blocks are dropped; everything else comes back, in order, once.
    assert "".join(joined.split()) == "".join(text.replace("\r", "\n").split()) or (
        joined.strip() == text.strip()
    )
    offsets = [p.metadata["offset"] for p in pieces]
    assert offsets == sorted(offsets)
