"""Hook implementations of lanewise-ingest (entry point group `lanewise`)."""
