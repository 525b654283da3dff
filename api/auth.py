"""API keys: ``Authorization: Bearer <key>`` checked against SHA-256 hashes from the config.

Only hashes are configured (``api.api_key_sha256``; ``odpm config hash-key``
makes one), so a leaked config file does not leak a key.  The presented key's
digest is compared with *every* configured digest using
:func:`hmac.compare_digest`, without stopping at the first match, so the time
taken says nothing about which key, or how much of one, was right.

* no key configured: writes are refused with 403 and a message saying how to
  set one (a service must not be writable by anyone because nobody set a key);
* missing or wrong key: 401 with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from fastapi import HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

#: The scheme object also documents the security requirement in OpenAPI.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key whose SHA-256 is listed in api.api_key_sha256.",
)

NO_KEY_CONFIGURED = (
    "no API key is configured, so this request is refused: make one with "
    "`odpm config hash-key` and put the printed hash in api.api_key_sha256 "
    "(or ODPM_API__API_KEY_SHA256='[\"<hash>\"]')"
)


def key_matches(key: str, digests: Sequence[str]) -> bool:
    """Whether ``key``'s SHA-256 is one of ``digests``, in time independent of which."""
    presented = hashlib.sha256(key.encode("utf-8")).hexdigest().encode("ascii")
    found = False
    for digest in digests:
        found |= hmac.compare_digest(presented, digest.encode("ascii"))
    return found


def key_refusal(key: str | None, digests: Sequence[str]) -> HTTPException | None:
    """The HTTP error for a request presenting ``key`` (None: no key), or None if it passes.

    One function for the route dependencies and for :mod:`api.guard`, which checks
    the key before a request body is read.
    """
    if not digests:
        return HTTPException(status.HTTP_403_FORBIDDEN, detail=NO_KEY_CONFIGURED)
    challenge = {"WWW-Authenticate": "Bearer"}
    if not key:
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send `Authorization: Bearer <key>`",
            headers=challenge,
        )
    if not key_matches(key, digests):
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail="wrong API key", headers=challenge
        )
    return None


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value (None for anything else)."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def require_key(credentials: HTTPAuthorizationCredentials | None, digests: Sequence[str]) -> None:
    """Raise the HTTP error for a request whose credentials do not pass."""
    refusal = key_refusal(credentials.credentials if credentials else None, digests)
    if refusal is not None:
        raise refusal
