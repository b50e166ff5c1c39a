"""Credentials encrypted at rest, tokens stored hashed."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

TOKEN_PREFIX = "secret-token:"


class Vault:
    """Encrypts credential dicts with a key derived from ``REFLOW_SECRET_KEY``."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, credentials: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(credentials).encode()).decode()

    def decrypt(self, blob: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(blob.encode()))
        except InvalidToken as exc:
            raise RuntimeError(
                "stored credentials cannot be decrypted: wrong REFLOW_SECRET_KEY"
            ) from exc


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are matched with and without the ``secret-token:`` prefix, since
    clients have sent both forms."""
    bare = token.removeprefix(TOKEN_PREFIX)
    return hashlib.sha256(bare.encode()).hexdigest()
