"""API tokens: made once, shown once, stored only as their sha256; checked on every request.

Example:
    >>> token = new_token()
    >>> token.startswith("st_") and len(hash_token(token)) == 64
    True
    >>> bearer("Bearer abc"), bearer("Basic abc"), bearer(None)
    ('abc', None, None)
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    """A fresh, high-entropy API token (256 random bits)."""
    return "st_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex sha256 the registry keeps instead of the token. Tokens are random, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
