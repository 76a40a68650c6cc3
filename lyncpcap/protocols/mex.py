"""WebTicket / CertProv Metadata Exchange (WSDL + WS-Policy): which authentication ports a pool offers.

Port names follow `MobilePreferredAuthType` ([MS-OCAUTHWS], New-CsWebServiceConfiguration):
WebTicketServiceWinNegotiate, …WinNtlm, …Auth, …Cert, …Anon, …Pin, WsFedPassive, WsFedBearer, OAuth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import xmlsafe

#: suffix of the wsdl:port name → the method it offers (checked longest first)
PORT_METHODS: tuple[tuple[str, str], ...] = (
    ("WinNegotiate", "windows"),
    ("WinNtlm", "ntlm"),
    ("WsFedPassive", "passive"),
    ("WsFedBearer", "wsfed-bearer"),
    ("OAuth", "oauth"),
    ("Anon", "anonymous"),
    ("Cert", "certificate"),
    ("Pin", "pin"),
    ("Auth", "password"),
    ("Proof_SHA1", "web-ticket-proof"),
    ("Bearer", "web-ticket-bearer"),
)


#: distinct bodies whose parse results are kept
_RECENT = 256


@dataclass(frozen=True, slots=True)
class MexInfo:
    service: str | None
    ports: tuple[tuple[str, str | None], ...]  # (port name, address)
    methods: tuple[str, ...]  # offered methods, in port order, deduplicated
    oauth_authorization_uri: str | None


def method_of_port(name: str) -> str | None:
    for suffix, method in PORT_METHODS:
        if name.endswith(suffix) or f"{suffix}_" in name or name == suffix:
            return method
    return None


def parse(body: bytes) -> MexInfo:
    root = xmlsafe.parse(body)
    if xmlsafe.local(root.tag) not in ("definitions", "Metadata", "Envelope"):
        raise MalformedError("not a WSDL document")
    service_el = xmlsafe.find_local(root, "service")
    ports: list[tuple[str, str | None]] = []
    methods: list[str] = []
    for port in xmlsafe.iter_local(root, "port"):
        name = port.get("name") or ""
        addr_el = xmlsafe.find_local(port, "address")
        addr = addr_el.get("location") if addr_el is not None else None
        ports.append((name, addr))
        m = method_of_port(name)
        if m and m not in methods:
            methods.append(m)
    oauth_uri = None
    for el in xmlsafe.iter_local(root, "OAuth"):
        oauth_uri = xmlsafe.attr_local(el, "authorizationUri") or oauth_uri
    return MexInfo(
        service=service_el.get("name") if service_el is not None else None,
        ports=tuple(ports),
        methods=tuple(methods),
        oauth_authorization_uri=oauth_uri,
    )


def try_parse(body: bytes) -> MexInfo | None:
    """`parse`, or None for what is not such a document.  The same bodies come again and again
    (every client of a pool fetches the same documents, NTLM sends a request body three times),
    so the results for the latest 256 distinct bodies are kept (frozen records, only ever read)."""
    return _try_parse(bytes(body))


@functools.lru_cache(maxsize=_RECENT)
def _try_parse(body: bytes) -> MexInfo | None:
    if not body or not xmlsafe.looks_like_xml(body):
        return None
    try:
        return parse(body)
    except MalformedError:
        return None
