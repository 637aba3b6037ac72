"""The ingest lane's own settings section."""

from __future__ import annotations

from typing import Any

import pytest


def test_a_misspelt_ingest_key_fails_naming_the_allowed_ones(lanewise_settings: Any) -> None:
    from lanewise.core.errors import ConfigError
    from lanewise.ingest.settings import ingest_settings

    with pytest.raises(
        ConfigError, match=r"ingest\.max_queue_dept: unknown key; allowed: .*max_queue_depth"
    ):
        ingest_settings(lanewise_settings(ingest={"max_queue_dept": 3}))
    assert ingest_settings(lanewise_settings(ingest={"max_queue_depth": 3})).max_queue_depth == 3
