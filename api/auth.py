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


def require_key(credentials: HTTPAuthorizationCredentials | None, digests: Sequence[str]) -> None:
    """Raise the HTTP error for a request whose credentials do not pass."""
    if not digests:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=NO_KEY_CONFIGURED)
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send `Authorization: Bearer <key>`",
            headers=challenge,
        )
    if not key_matches(credentials.credentials, digests):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong API key", headers=challenge)
