"""Secret values (passwords, tokens, tickets, cookies, SAML) that must not leak into any output.

A `Secret` prints as `«redacted sha256:xxxxxxxx»` everywhere (str, repr, f-strings); only
`Secret.render(reveal=True)`, used when the user passes `--reveal-secrets`, gives the value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from lyncpcap.model import pickled_by_fields


@pickled_by_fields
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


#: Query parameters of sign-in URLs that carry no credentials and help a reader (discovery hints,
#: WS-Federation routing).  Every other parameter value is redacted like any other secret: a query
#: string is where passwords (`?password=`), tokens and conference keys (`?xml=`) travel.
HARMLESS_QUERY_PARAMETERS: frozenset[str] = frozenset(
    {"sipuri", "originalDomain", "wa", "wtrealm", "wct", "wctx", "wreply", "legacy", "ReturnUrl", "ts"}
)


def redact_url(url: str | None, reveal: bool = False) -> str | None:
    """The URL with query values redacted (`«redacted sha256:…»` of the decoded value) unless they
    are known harmless; harmless parameters keep their exact text.  A fragment written as
    parameters (`#access_token=…&token_type=Bearer`, the OAuth implicit flow's answer in a redirect)
    is redacted the same way.  Every output goes through this."""
    if url is None or reveal or ("?" not in url and "#" not in url):
        return url
    rest, hash_mark, fragment = url.partition("#")
    base, question, query = rest.partition("?")
    if question:
        query = _redact_pairs(query)
    if hash_mark and "=" in fragment:
        fragment = _redact_pairs(fragment)
    return f"{base}{question}{query}{hash_mark}{fragment}"


def _redact_pairs(text: str) -> str:
    parts = []
    for pair in text.split("&"):
        raw_name, equals, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        value = unquote_plus(raw_value)
        if not equals or not value or name in HARMLESS_QUERY_PARAMETERS or value.startswith("«redacted"):
            parts.append(pair)
        else:
            parts.append(f"{raw_name}={Secret('query', value).redacted()}")
    return "&".join(parts)


def render(value: Any, reveal: bool = False) -> Any:
    """Recursively replace Secrets in JSON-like data by their redacted (or revealed) text."""
    if isinstance(value, Secret):
        return value.render(reveal)
    if isinstance(value, dict):
        return {k: render(v, reveal) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v, reveal) for v in value]
    return value
