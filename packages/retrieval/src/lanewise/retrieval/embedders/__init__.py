"""Embedders: text in, L2-normalised vectors out, each with a stable id + version."""
