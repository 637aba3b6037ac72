"""Hook implementations of lanewise-inference (entry point group `lanewise`)."""
