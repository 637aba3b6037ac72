"""The ingest lane's own settings section, registered with core."""

from __future__ import annotations

from typing import Any

import pytest
from lanewise.core.errors import ConfigError
from lanewise.ingest.settings import IngestSettings, ingest_settings


def test_a_misspelt_ingest_key_fails_naming_the_allowed_ones(lanewise_settings: Any) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.max_queue_dept.*max_queue_depth"):
        lanewise_settings(ingest={"max_queue_dept": 3})
    settings = lanewise_settings(ingest={"max_queue_depth": 3})
    assert ingest_settings(settings).max_queue_depth == 3
    assert isinstance(ingest_settings(lanewise_settings()), IngestSettings)
