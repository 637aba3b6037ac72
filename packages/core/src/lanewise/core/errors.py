"""Errors that cross lane boundaries.

Each carries what an RFC 9457 problem document needs: a stable ``type``, an
HTTP status, a ``detail`` that tells the caller what to do, and extension
members naming the limit that was hit. The gateway renders them; lanes raise
them and never build HTTP responses themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://lanewise.dev/problems/"


class LanewiseError(Exception):
    type_slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(
        self,
        detail: str,
        *,
        retry_after_s: float | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.extensions = extensions

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.type_slug


class ConfigError(LanewiseError):
    """Configuration is invalid; raised at start-up, never per request."""

    type_slug = "config"
    title = "Invalid configuration"
    status = 500


class InvalidRequest(LanewiseError):
    type_slug = "invalid-request"
    title = "Invalid request"
    status = 400


class MalformedJson(LanewiseError):
    """The body is not UTF-8 JSON (decoding failed before any field was looked at)."""

    type_slug = "malformed-json"
    title = "Malformed JSON"
    status = 400


class UnsupportedMediaType(LanewiseError):
    """The body is not ``application/json``, or is compressed."""

    type_slug = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class Unauthorized(LanewiseError):
    type_slug = "unauthorized"
    title = "Unauthorized"
    status = 401


class NotFound(LanewiseError):
    type_slug = "not-found"
    title = "Not found"
    status = 404


class PayloadTooLarge(LanewiseError):
    type_slug = "payload-too-large"
    title = "Request body too large"
    status = 413


class LimitExceeded(LanewiseError):
    type_slug = "limit-exceeded"
    title = "Limit exceeded"
    status = 429


class Unavailable(LanewiseError):
    type_slug = "unavailable"
    title = "Service unavailable"
    status = 503


class UpstreamTimeout(LanewiseError):
    type_slug = "upstream-timeout"
    title = "Upstream deadline exceeded"
    status = 504


class UpstreamError(LanewiseError):
    type_slug = "upstream-error"
    title = "Upstream error"
    status = 502
