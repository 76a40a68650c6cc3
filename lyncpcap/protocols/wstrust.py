"""WS-Trust web-ticket messages of [MS-OCAUTHWS]: RequestSecurityToken(Response) and SOAP faults.

Reads the facts an analyst needs (token type, AppliesTo, the Claims SIP URI, the UsernameToken user,
the issued ticket's subject and lifetime, `OCSDiagnosticsFault` ErrorId) and keeps secrets as `Secret`.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import xmlsafe
from lyncpcap.secrets import Secret

PASSWORD_TEXT = "#PasswordText"
CWT_TOKEN_TYPE = "urn:component:Microsoft.Rtc.WebAuthentication.2010:user-cwt-1"
SIP_URI_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/uri"


#: distinct bodies whose parse results are kept
_RECENT = 256


@dataclass(frozen=True, slots=True)
class RequestSecurityToken:
    token_type: str | None
    request_type: str | None
    applies_to: str | None
    claims_sip_uri: str | None
    conference_uri: str | None  # anonymous (guest) requests name the meeting they join
    key_type: str | None
    username: str | None  # UsernameToken user, base64 decoded when the client encoded it (DOMAIN\user)
    password: Secret | None  # UsernameToken password (decoded), never printed unless revealed
    has_saml_header: bool  # a SAML assertion (web ticket) in the WS-Security header: ticket-proof request
    has_x509_header: bool  # a BinarySecurityToken X.509 in the header: certificate authentication
    lifetime_expires: str | None


@dataclass(frozen=True, slots=True)
class RequestSecurityTokenResponse:
    token_type: str | None
    subject: str | None  # saml:NameIdentifier (the SIP URI the ticket is for)
    assertion_id_present: bool
    compact_ticket: bool  # a cwt= compact web ticket
    ticket: Secret | None  # the issued assertion / cwt (secret)
    created: str | None
    expires: str | None


@dataclass(frozen=True, slots=True)
class SoapFault:
    code: str | None
    string: str | None
    error_id: int | None  # OCSDiagnosticsFault / Ms-Diagnostics-Fault ErrorId
    reason: str | None

    def diagnostic(self) -> str:
        parts = []
        if self.code:
            parts.append(self.code)
        if self.error_id is not None:
            parts.append(f"ErrorId {self.error_id}")
        if self.reason or self.string:
            parts.append(f'"{self.reason or self.string}"')
        return " ".join(parts)


def _maybe_b64(text: str) -> str:
    """UsernameToken values are base64 in Lync requests; decode when that gives clean text."""
    t = text.strip()
    if not t or len(t) % 4 or any(c.isspace() for c in t):
        return t
    try:
        raw = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return t
    for enc in ("utf-8", "utf-16-le"):
        try:
            s = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        if s and s.isprintable() and (enc == "utf-8" or max(map(ord, s)) < 0x800):
            # UTF-16 only for alphabetic scripts: a plain-text name whose length is a multiple of 4
            # ("bobsmith") is valid base64 too, and its bytes read as UTF-16 give CJK-looking noise
            return s
    return t


def parse(body: bytes) -> RequestSecurityToken | RequestSecurityTokenResponse | SoapFault | None:
    """Decode a WS-Trust SOAP body; None when it is XML but none of these messages."""
    root = xmlsafe.parse(body)
    fault = xmlsafe.find_local(root, "Fault")
    if fault is not None:
        err = xmlsafe.text_of(fault, "ErrorId")
        try:
            error_id = int(err) if err else None
        except ValueError:
            error_id = None
        return SoapFault(
            code=xmlsafe.text_of(fault, "faultcode") or xmlsafe.text_of(fault, "Value"),
            string=xmlsafe.text_of(fault, "faultstring") or xmlsafe.text_of(fault, "Text"),
            error_id=error_id,
            reason=xmlsafe.text_of(fault, "Reason") if error_id is not None else None,
        )
    rstr = xmlsafe.find_local(root, "RequestSecurityTokenResponse")
    if rstr is not None:
        assertion = xmlsafe.find_local(rstr, "Assertion")
        text = body.decode("utf-8", "replace")
        cwt = None
        idx = text.find("cwt=")
        if idx >= 0:
            end = idx + 4
            while end < len(text) and (text[end].isalnum() or text[end] in "+/=-_"):
                end += 1
            cwt = text[idx:end]
        ticket: Secret | None = None
        if cwt:
            ticket = Secret("web-ticket", cwt)
        elif assertion is not None:
            aid = xmlsafe.attr_local(assertion, "AssertionID") or xmlsafe.attr_local(assertion, "ID") or ""
            ticket = Secret("saml", aid) if aid else None
        return RequestSecurityTokenResponse(
            token_type=xmlsafe.text_of(rstr, "TokenType"),
            subject=xmlsafe.text_of(rstr, "NameIdentifier"),
            assertion_id_present=assertion is not None,
            compact_ticket=cwt is not None,
            ticket=ticket,
            created=xmlsafe.text_of(rstr, "Created"),
            expires=xmlsafe.text_of(rstr, "Expires"),
        )
    rst = xmlsafe.find_local(root, "RequestSecurityToken")
    if rst is None:
        return None
    applies = xmlsafe.find_local(rst, "AppliesTo")
    applies_to = xmlsafe.text_of(applies, "Address") if applies is not None else None
    claims_uri = conference_uri = None
    claims = xmlsafe.find_local(rst, "Claims")
    if claims is not None:
        for ct in xmlsafe.iter_local(claims, "ClaimType"):
            uri = (xmlsafe.attr_local(ct, "Uri") or "").lower()
            val = xmlsafe.text_of(ct, "Value")
            if not val:
                continue
            if "opaque=app:conf:" in val.lower() or uri.endswith("conferenceuri"):
                conference_uri = val  # a guest joining a meeting names the conference, not a user
            elif uri == SIP_URI_CLAIM or (not uri and val.lower().startswith("sip:")):
                claims_uri = val
    header = xmlsafe.find_local(root, "Header")
    username = password = None
    has_saml = has_x509 = False
    if header is not None:
        ut = xmlsafe.find_local(header, "UsernameToken")
        if ut is not None:
            u = xmlsafe.text_of(ut, "Username")
            username = _maybe_b64(u) if u else None
            p = xmlsafe.text_of(ut, "Password")
            if p:
                password = Secret("password", _maybe_b64(p))
        has_saml = xmlsafe.find_local(header, "Assertion") is not None
        for bst in xmlsafe.iter_local(header, "BinarySecurityToken"):
            if "x509" in (xmlsafe.attr_local(bst, "ValueType") or "").lower():
                has_x509 = True
    lifetime = xmlsafe.find_local(rst, "Lifetime")
    return RequestSecurityToken(
        token_type=xmlsafe.text_of(rst, "TokenType"),
        request_type=xmlsafe.text_of(rst, "RequestType"),
        applies_to=applies_to,
        claims_sip_uri=claims_uri,
        conference_uri=conference_uri,
        key_type=xmlsafe.text_of(rst, "KeyType"),
        username=username,
        password=password,
        has_saml_header=has_saml,
        has_x509_header=has_x509,
        lifetime_expires=xmlsafe.text_of(lifetime, "Expires") if lifetime is not None else None,
    )


def try_parse(body: bytes) -> RequestSecurityToken | RequestSecurityTokenResponse | SoapFault | None:
    """`parse`, or None for what is not such a document.  The same bodies come again and again
    (every client of a pool fetches the same documents, NTLM sends a request body three times),
    so the results for the latest 256 distinct bodies are kept (frozen records, only ever read)."""
    return _try_parse(bytes(body))


@functools.lru_cache(maxsize=_RECENT)
def _try_parse(body: bytes) -> RequestSecurityToken | RequestSecurityTokenResponse | SoapFault | None:
    if not body or not xmlsafe.looks_like_xml(body):
        return None
    try:
        return parse(body)
    except MalformedError:
        return None
