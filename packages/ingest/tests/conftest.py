"""Fixtures of the ingest tests: a mixed corpus written to disk, real components."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lanewise.ingest.testing import pgvector_server

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember a failed test phase, so fixtures can show what the worker logged."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def make_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page (offsets computed)."""
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R"
            " /Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


CORPUS: dict[str, Any] = {
    "guide.md": "# Guide\n\nLanes are deployed separately. Each lane scales alone.\n\n"
    "## Ingest\n\nParsing is memory-bound and embedding is accelerator-bound.\n",
    "notes.txt": "Plain notes about queues.\n\nRedis is the broker for Celery workers.\n",
    "page.html": "<html><head><title>Ops page</title><style>p{}</style></head><body>"
    "<nav>menu</nav><h1>Operations</h1><p>Workers restart after a crash.</p>"
    "<h2>Alerts</h2><ul><li>Queue depth above the limit pages someone.</li></ul></body></html>",
    "records.jsonl": "\n".join(
        json.dumps({"text": t, "lang": "en", "n": n})
        for n, t in enumerate(["First record text.", "Second record text."])
    )
    + "\n",
    "manual.pdf": make_pdf(["Page one talks about budgets.", "Page two talks about tokens."]),
    "broken.pdf": b"%PDF-1.4\n1 0 obj garbage that is not a PDF at all\n%%EOF\n",
    "photo.bin": bytes(range(256)) * 8,
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, content in CORPUS.items():
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """PostgreSQL 16 with pgvector (the pgserver wheel), as in the retrieval lane's tests."""
    with pgvector_server() as url:
        yield url
