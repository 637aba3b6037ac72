from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lanewise.governance.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield opened
    finally:
        opened.close()
