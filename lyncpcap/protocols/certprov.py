"""Certificate provisioning ([MS-OCAUTHWS] §3.1.4.1 GetAndPublishCert): request and answer.

Errors come back inside `GetAndPublishCertResponse` as `ErrorInfo`, not as SOAP faults.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import xmlsafe

#: distinct bodies whose parse results are kept
_RECENT = 256


@dataclass(frozen=True, slots=True)
class CertRequest:
    entity: str | None  # the SIP URI the certificate is for
    device_id: str | None
    has_csr: bool


@dataclass(frozen=True, slots=True)
class CertResponse:
    issued: bool
    error: str | None  # ErrorInfo text, verbatim


def parse(body: bytes) -> CertRequest | CertResponse | None:
    root = xmlsafe.parse(body)
    resp = xmlsafe.find_local(root, "GetAndPublishCertResponse")
    if resp is not None:
        err_el = xmlsafe.find_local(resp, "ErrorInfo")
        error = None
        if err_el is not None:
            error = " ".join(t.strip() for t in err_el.itertext() if t.strip()) or "ErrorInfo"
        issued = any(
            (el.text or "").strip() for el in xmlsafe.iter_local(resp, "BinarySecurityToken")
        ) and error is None
        return CertResponse(issued=issued, error=error)
    req = xmlsafe.find_local(root, "GetAndPublishCert")
    if req is not None:
        return CertRequest(
            entity=req.get("Entity") or xmlsafe.attr_local(req, "Entity"),
            device_id=req.get("DeviceId") or xmlsafe.attr_local(req, "DeviceId"),
            has_csr=xmlsafe.find_local(req, "BinarySecurityToken") is not None,
        )
    return None


def try_parse(body: bytes) -> CertRequest | CertResponse | None:
    """`parse`, or None for what is not such a document.  The same bodies come again and again
    (every client of a pool fetches the same documents, NTLM sends a request body three times),
    so the results for the latest 256 distinct bodies are kept (frozen records, only ever read)."""
    return _try_parse(bytes(body))


@functools.lru_cache(maxsize=_RECENT)
def _try_parse(body: bytes) -> CertRequest | CertResponse | None:
    if not body or not xmlsafe.looks_like_xml(body):
        return None
    try:
        return parse(body)
    except MalformedError:
        return None
