"""Credential fields the database connectors share, so a field means (and is
titled, described and aliased) the same in every source and destination."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field


def hostname_field() -> Any:
    return Field(
        title="Hostname",
        description="Host name or IP address of the server.",
        validation_alias=AliasChoices("hostname", "host"),
    )


def port_field(default: int) -> Any:
    return Field(default, title="Port", description="TCP port of the server.", ge=1, le=65535)


def user_field(description: str = "User to connect as.") -> Any:
    return Field(
        title="User", description=description, validation_alias=AliasChoices("user", "username")
    )


def password_field(description: str = "The user's password.") -> Any:
    return Field(None, title="Password", description=description)
