"""Hook implementations of lanewise-governance (entry point group `lanewise`)."""
