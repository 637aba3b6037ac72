"""Hook implementations of lanewise-retrieval (entry point group `lanewise`)."""
