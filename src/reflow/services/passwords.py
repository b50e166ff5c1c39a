"""Organization users' console passwords: scrypt (stdlib ``hashlib.scrypt``), a random
salt per password, parameters stored beside the digest so they can be raised later."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from reflow.errors import BadRequest

MIN_LENGTH = 10

#: scrypt parameters (RFC 7914): N=2^15, r=8, p=1 needs 32 MiB and ~50 ms per hash.
_N, _R, _P = 2**15, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 2**20)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
            maxmem=64 * 2**20,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def parse_password(value: object, field: str = "password") -> str:
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        raise BadRequest(f"{field} must be at least {MIN_LENGTH} characters")
    if len(value) > 1024:
        raise BadRequest(f"{field} must be at most 1024 characters")
    return value
