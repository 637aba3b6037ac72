"""lanewise.retrieval lane."""
