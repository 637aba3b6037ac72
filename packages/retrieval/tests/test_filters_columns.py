"""The embedded store's vectorised filter evaluation equals the reference evaluator."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lanewise.retrieval.filters import Node, evaluate
from lanewise.retrieval.stores.embedded_columns import Columns
from lanewise.retrieval.strategies import filters, metadata

_odd_values = st.sampled_from([None, [1], {"a": 1}, float("inf"), "", 0, False, 2**40])


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            metadata(), st.dictionaries(st.sampled_from(["lang", "year", "tag"]), _odd_values)
        ),
        max_size=150,
    ),
    filters(),
    st.integers(1, 4),
)
def test_mask_equals_reference(rows: list[dict[str, Any]], node: Node, chunks: int) -> None:
    columns = Columns()
    # Appending in several chunks exercises column growth past its initial capacity.
    step = max(1, len(rows) // chunks)
    for start in range(0, len(rows), step):
        columns.append(rows[start : start + step])
    assert columns.mask(node).tolist() == [evaluate(node, meta) for meta in rows]
    assert columns.mask(None).tolist() == [True] * len(rows)
