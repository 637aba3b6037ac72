"""lanewise.ingest lane."""
