"""Every settings key is documented in docs/configuration.md, with its env var form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from lanewise.core.settings import ComponentConfig, load_settings
from pydantic import BaseModel

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(dotted key, has its own env var) for every field, nested sections included."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = [
            t
            for t in (field.annotation, *get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel) and t is not ComponentConfig
        ]
        is_list = "list[" in str(field.annotation)
        if nested and not is_list:  # a section: documented as a `[section]` heading
            yield f"[{key}]", False
        else:
            yield key, not prefix.endswith("[].")
        if nested:
            yield from keys(nested[0], f"{key}[]." if is_list else f"{key}.")


# The settings model of this install: core's keys plus every installed lane's section.
ALL = sorted(keys(type(load_settings(None))))


def test_the_walk_finds_nested_keys():
    names = [k for k, _ in ALL]
    assert "gateway.port" in names
    assert "gateway.api_keys[].sha256" in names
    assert "retrieval.vector_store" in names
    assert "[gateway]" in names


@pytest.mark.parametrize(("key", "has_env"), ALL, ids=[k for k, _ in ALL])
def test_key_is_documented(key, has_env):
    text = DOC.read_text()
    assert f"`{key}`" in text, f"docs/configuration.md does not document `{key}`"
    if has_env:
        env = "LANEWISE_" + key.upper().replace(".", "__")
        assert env in text, f"docs/configuration.md does not show {env}"


def test_mkdocs_nav_points_at_existing_pages():
    import re

    mkdocs = (DOC.parents[1] / "mkdocs.yml").read_text()
    pages = re.findall(r":\s*([\w./-]+\.md)\s*$", mkdocs, flags=re.MULTILINE)
    assert "index.md" in pages
    missing = [p for p in pages if not (DOC.parent / p).is_file()]
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"
