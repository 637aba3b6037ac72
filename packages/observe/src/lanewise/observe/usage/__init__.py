"""The SQL usage table: written off the request path, read by ``GET /v1/usage``."""
