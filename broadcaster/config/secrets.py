"""Credentials kept out of sight.

A :class:`Secret` never shows itself in a repr, log or error; ``.reveal()`` is called at the
point of use only. Passwords inside database and Redis URLs are masked wherever a URL is shown,
and :func:`redact` removes every configured secret from text we store or show (providers
sometimes echo the request back in their error bodies).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel


class Secret:
    """A credential. Its repr and str are masked; ask for ``.reveal()`` at the point of use."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        def to_secret(v: Any) -> Secret:
            if isinstance(v, Secret):
                return v
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                return cls(str(v))
            raise ValueError("must be a string")

        return core_schema.no_info_plain_validator_function(
            to_secret, serialization=core_schema.plain_serializer_function_ser_schema(lambda s: "**********")
        )


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host`` for anything shown to people."""
    return re.sub(r"(//[^:/@\s;]*):[^@/\s;]*@", r"\1:***@", str(url))


def secret_values(node: Any) -> set[str]:
    """Every revealed Secret inside a settings object (nested models, dicts, lists included)."""
    out: set[str] = set()
    if isinstance(node, Secret):
        if len(node.reveal()) >= 4:
            out.add(node.reveal())
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            out |= secret_values(getattr(node, name))
    elif isinstance(node, dict):
        for v in node.values():
            out |= secret_values(v)
    elif isinstance(node, (list, tuple, set)):
        for v in node:
            out |= secret_values(v)
    return out


_BEARER = re.compile(r"(?i)\b(bearer|token|oauth)\s+[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str | None, secrets: set[str]) -> str | None:
    """Remove secret values (and anything shaped like a bearer token) from text we store or show:
    providers sometimes echo the request back in their error bodies."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _BEARER.sub(lambda m: m.group(1) + " ***", text)
