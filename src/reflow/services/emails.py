"""Email addresses as users, invitations and workspace notifications accept them. A
module of its own so that organization and workspace_admin, which both parse them, do
not import each other."""

from __future__ import annotations

import re
from typing import Any

from reflow.errors import BadRequest

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def parse_email(value: Any, field: str = "email") -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        raise BadRequest(f"{field} must be an email address")
    return value.strip().lower()
