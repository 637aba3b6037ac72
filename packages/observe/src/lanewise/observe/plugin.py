"""Hook implementations of lanewise-observe (entry point group `lanewise`)."""
