"""The console's session cookie and CSRF tokens.

The session is a small JSON document encrypted and authenticated with Fernet under a key
derived from the runtime's secret key (so rotating ``REFLOW_SECRET_KEY`` signs everyone
out). It names *what* signed in (an API token's row id, or a user's id) and never the
token itself; every request re-reads that row, so a revoked token or a removed user
loses the console at once, exactly as on the API. Fernet's timestamp bounds its age.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "reflow_session"
#: Set by the sign-in page before there is a session: a double-submit CSRF token.
SIGNIN_COOKIE = "reflow_signin"
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True)
class ConsoleSession:
    #: "token": a workspace API key | "pat": a personal access token | "user": a password
    kind: str
    subject_id: int  # api_tokens.id, or users.id for "user"
    workspace_id: int
    csrf: str


def _fernet(secret_key: str) -> Fernet:
    # A key of its own (not the vault's): a cookie can never be fed to credential decryption.
    digest = hashlib.sha256(b"reflow-console-session\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def new_session(kind: str, subject_id: int, workspace_id: int) -> ConsoleSession:
    return ConsoleSession(kind, subject_id, workspace_id, secrets.token_urlsafe(24))


def encode(secret_key: str, value: ConsoleSession, *, at: float | None = None) -> str:
    """``at`` backdates the cookie (tests of expiry)."""
    data = json.dumps(asdict(value)).encode()
    moment = int(at if at is not None else time.time())
    return _fernet(secret_key).encrypt_at_time(data, moment).decode()


def decode(secret_key: str, cookie: str | None) -> ConsoleSession | None:
    """The session, or None when absent, forged, or older than ``MAX_AGE_SECONDS``."""
    if not cookie:
        return None
    try:
        raw: Any = json.loads(_fernet(secret_key).decrypt(cookie.encode(), ttl=MAX_AGE_SECONDS))
        return ConsoleSession(
            str(raw["kind"]), int(raw["subject_id"]), int(raw["workspace_id"]), str(raw["csrf"])
        )
    except (InvalidToken, ValueError, KeyError, TypeError):
        return None


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# -- invitation links -------------------------------------------------------------------

INVITE_MAX_AGE_SECONDS = 7 * 24 * 3600


def _invite_fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"reflow-console-invitation\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def invite_code(secret_key: str, invitation_id: int) -> str:
    """The code of an invitation's acceptance link. It needs no storage: it works until
    the invitation is claimed (accepting checks that) or for a week, whichever is first."""
    return _invite_fernet(secret_key).encrypt(json.dumps({"i": invitation_id}).encode()).decode()


def read_invite_code(secret_key: str, code: str | None) -> int | None:
    if not code:
        return None
    try:
        raw = json.loads(_invite_fernet(secret_key).decrypt(code.encode(),
                                                            ttl=INVITE_MAX_AGE_SECONDS))
        return int(raw["i"])
    except (InvalidToken, ValueError, KeyError, TypeError):
        return None
