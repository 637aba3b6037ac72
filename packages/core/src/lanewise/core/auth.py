"""API keys: presented as ``Authorization: Bearer <key>``, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from lanewise.core.errors import Unauthorized
from lanewise.core.settings import Settings
from lanewise.core.types import ANONYMOUS, Principal


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


def principal_from_keys(headers: Mapping[str, str], settings: Settings) -> Principal:
    keys = settings.gateway.api_keys
    if not keys:
        return ANONYMOUS
    token = bearer_token(headers)
    if token is None:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    digest = hash_key(token)
    for key in keys:
        if hmac.compare_digest(digest, key.sha256):
            return Principal(
                tenant=key.tenant,
                user=key.user,
                key_id=key.sha256[:12],
                workflow=key.workflow,
                priority=key.priority,
            )
    raise Unauthorized("the API key is not valid")
