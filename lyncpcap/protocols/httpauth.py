"""Authorization / WWW-Authenticate / Authentication-Info values (RFC 7235 shape, MS-SIPAE params).

Shared by HTTP and SIP: `NTLM TlRM…` (token68), `Negotiate YII…`, `MsRtcOAuth href="…",grant_type="…"`,
SIP `NTLM qop="auth", realm="SIP Communications Service", targetname="…", gssapi-data="…", version=4`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AuthValue:
    scheme: str  # as sent, e.g. "NTLM", "Negotiate", "Kerberos", "TLS-DSK", "Bearer", "MsRtcOAuth"
    token: str | None = None  # token68 form (HTTP NTLM/Negotiate blobs, Bearer cwt=…)
    params: dict[str, str] = field(default_factory=dict)  # lower-cased names, unquoted values

    @property
    def lscheme(self) -> str:
        return self.scheme.lower()

    def param(self, name: str) -> str | None:
        return self.params.get(name.lower())


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return v


def _split_params(text: str) -> list[str]:
    """Split at commas outside quoted strings (inside quotes a backslash escapes the next
    character).  Jumps from quote to comma with str.find: a SIP gssapi-data value is kilobytes long."""
    if '"' not in text:
        parts = text.split(",")
    else:
        parts = []
        start = i = 0
        n = len(text)
        while i < n:
            comma = text.find(",", i)
            quote = text.find('"', i)
            if comma != -1 and (quote == -1 or comma < quote):
                parts.append(text[start:comma])
                start = i = comma + 1
                continue
            if quote == -1:
                break
            i = quote + 1  # inside a quoted string: to its closing quote, over escaped characters
            while True:
                end = text.find('"', i)
                escape = text.find("\\", i, n if end == -1 else end)
                if escape != -1:
                    i = escape + 2
                    continue
                i = n if end == -1 else end + 1
                break
        parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse(value: str) -> AuthValue:
    """Parse one credentials/challenge value.  Never raises: junk gives a scheme-only value."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    rest = rest.strip()
    if not rest:
        return AuthValue(scheme=scheme)
    # token68: no '=' before the end except base64 padding, and no quotes / commas
    if "," not in rest and '"' not in rest:
        stripped = rest.rstrip("=")
        if "=" not in stripped or rest.lower().startswith(("cwt=", "opaque=")):
            return AuthValue(scheme=scheme, token=rest)
    params: dict[str, str] = {}
    for part in _split_params(rest):
        name, sep, val = part.partition("=")
        if not sep:
            continue
        params[name.strip().lower()] = _unquote(val)
    return AuthValue(scheme=scheme, params=params)


_CHALLENGE_START = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s|$)")


def challenges(value: str) -> list[str]:
    """The challenges of one WWW-Authenticate / Proxy-Authenticate value: RFC 7235 lets a server
    list several in one header (`Negotiate, NTLM`; `Bearer trusted_issuers="…", MsRtcOAuth
    href="…",grant_type="…"`).  A comma-separated part that starts with a scheme (a token then a
    space, or a token alone) starts a challenge; the others (`name=value`) are its parameters."""
    if "," not in value:
        return [value] if value.strip() else []
    out: list[str] = []
    for part in _split_params(value):
        m = _CHALLENGE_START.match(part)
        # a bare word is a scheme only if it is one (an unquoted list value such as `password` is not)
        if not out or (m and (m.end() < len(part) or part.lower() in BARE_SCHEMES)):
            out.append(part)
        else:
            out[-1] += ", " + part
    return out


#: Schemes a server may offer without parameters.
BARE_SCHEMES = frozenset({"negotiate", "ntlm", "kerberos", "tls-dsk", "basic", "digest", "bearer", "msrtcoauth", "nego2"})


def parse_all(values: list[str]) -> list[AuthValue]:
    """Every challenge (or credential) of a header's values, in order."""
    return [parse(c) for v in values for c in challenges(v)]
