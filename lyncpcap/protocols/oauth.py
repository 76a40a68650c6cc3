"""UCWA OAuth: the `MsRtcOAuth` challenge, `/WebTicket/oauthtoken` requests and their answers.

Grant types: `password`, `urn:microsoft.rtc:windows`, `urn:microsoft.rtc:anonmeeting`,
`urn:microsoft.rtc:passive` (UCWA "Authentication in UCWA").  Passwords and tokens stay `Secret`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lyncpcap.protocols.http import parse_query
from lyncpcap.secrets import Secret

GRANT_PASSWORD = "password"
GRANT_WINDOWS = "urn:microsoft.rtc:windows"
GRANT_ANONMEETING = "urn:microsoft.rtc:anonmeeting"
GRANT_PASSIVE = "urn:microsoft.rtc:passive"


@dataclass(frozen=True, slots=True)
class TokenRequest:
    grant_type: str | None
    username: str | None
    password: Secret | None  # the password, or the conference key for anonmeeting
    conference_uri: str | None


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: Secret | None
    token_type: str | None
    expires_in: int | None
    identity_scope: str | None
    error: str | None
    error_description: str | None
    passive_auth_uri: str | None


@dataclass(frozen=True, slots=True)
class OAuthChallenge:
    href: str | None
    grant_types: tuple[str, ...]


def parse_request(body: bytes) -> TokenRequest:
    form = parse_query(body.decode("utf-8", "replace"))
    grant = form.get("grant_type")
    pw = form.get("password")
    return TokenRequest(
        grant_type=grant,
        username=form.get("username") or None,
        password=Secret("conference-key" if grant == GRANT_ANONMEETING else "password", pw) if pw else None,
        conference_uri=form.get("ms_rtc_conferenceuri"),
    )


def parse_response(body: bytes) -> TokenResponse | None:
    try:
        doc = json.loads(body.decode("utf-8-sig", "replace"))  # some servers write a byte-order mark
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    tok = doc.get("access_token")
    exp = doc.get("expires_in")
    try:
        expires = int(exp) if exp is not None else None
    except (TypeError, ValueError):
        expires = None
    return TokenResponse(
        access_token=Secret("token", str(tok)) if tok else None,
        token_type=doc.get("token_type"),
        expires_in=expires,
        identity_scope=doc.get("ms_rtc_identityscope"),
        error=doc.get("error"),
        error_description=doc.get("error_description"),
        passive_auth_uri=doc.get("ms_rtc_passiveauthuri"),
    )


def parse_challenge(href: str | None, grant_type: str | None) -> OAuthChallenge:
    grants = tuple(g.strip() for g in (grant_type or "").split(",") if g.strip())
    return OAuthChallenge(href=href, grant_types=grants)
