"""Secret values (passwords, tokens, tickets, cookies, SAML) that must not leak into any output.

A `Secret` prints as `«redacted sha256:xxxxxxxx»` everywhere (str, repr, f-strings); only
`Secret.render(reveal=True)`, used when the user passes `--reveal-secrets`, gives the value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Secret:
    kind: str  # "password", "token", "web-ticket", "cookie", "saml", "conference-key", "ntlm-response"
    value: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.value.encode("utf-8", "surrogatepass")).hexdigest()[:8]

    def redacted(self) -> str:
        return f"«redacted sha256:{self.fingerprint}»"

    def render(self, reveal: bool = False) -> str:
        return self.value if reveal else self.redacted()

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"Secret({self.kind!r}, {self.redacted()})"

    def __format__(self, spec: str) -> str:
        return format(self.redacted(), spec)


def render(value: Any, reveal: bool = False) -> Any:
    """Recursively replace Secrets in JSON-like data by their redacted (or revealed) text."""
    if isinstance(value, Secret):
        return value.render(reveal)
    if isinstance(value, dict):
        return {k: render(v, reveal) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v, reveal) for v in value]
    return value
