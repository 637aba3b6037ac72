"""What a loader reads: a named stream of bytes (a file on disk or an upload)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lanewise.ingest.sniff import SNIFF_BYTES, sniff

HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Blob:
    """``name`` is what the user calls it (a relative path, an upload's file name)."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size

    def head(self) -> bytes:
        with self.open() as f:
            return f.read(SNIFF_BYTES)

    def mime(self) -> str:
        return sniff(self.name, self.head())

    def content_hash(self) -> str:
        """SHA-256 of the bytes, read in blocks: memory stays flat on large files."""
        digest = hashlib.sha256()
        with self.open() as f:
            while block := f.read(HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()
