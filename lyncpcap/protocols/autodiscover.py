"""Lync Autodiscover ([MS-OCDISCWS], UCWA docs): Root and User resources in JSON or XML.

The User resource's `AccessLocation` is the server's own internal/external verdict; `Redirect`
links send the client to another pool; `SipClient*Access` tell where SIP goes next.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import xmlsafe

#: distinct bodies whose parse results are kept
_RECENT = 256


@dataclass(frozen=True, slots=True)
class AutodiscoverInfo:
    resource: str  # "root" | "user" | "redirect" | "unknown"
    links: dict[str, str] = field(default_factory=dict)  # token/name → href
    access_location: str | None = None  # "Internal" | "External" (XML User resource)
    sip_internal: str | None = None  # "fqdn:port"
    sip_external: str | None = None

    @property
    def redirect(self) -> str | None:
        for k, v in self.links.items():
            if k.lower() == "redirect":
                return v
        return None


def _from_json(doc: object) -> AutodiscoverInfo:
    if not isinstance(doc, dict):
        raise MalformedError("Autodiscover JSON is not an object")
    links_obj = doc.get("_links") or {}
    links: dict[str, str] = {}
    if isinstance(links_obj, dict):
        for name, val in links_obj.items():
            if isinstance(val, dict) and isinstance(val.get("href"), str):
                links[name] = val["href"]
    lower = {k.lower() for k in links}
    if "redirect" in lower:
        resource = "redirect"
    elif "applications" in lower:
        resource = "user"
    elif "user" in lower:
        resource = "root"
    else:
        resource = "unknown"
    access = doc.get("AccessLocation")
    return AutodiscoverInfo(resource=resource, links=links, access_location=access if isinstance(access, str) else None)


def _from_xml(body: bytes) -> AutodiscoverInfo:
    root = xmlsafe.parse(body)
    if xmlsafe.local(root.tag) != "AutodiscoverResponse":
        raise MalformedError("not an AutodiscoverResponse")
    links = {}
    for link in xmlsafe.iter_local(root, "Link"):
        token = link.get("token") or ""
        href = link.get("href") or ""
        if token:
            links[token] = href
    access = root.get("AccessLocation")
    user_el = xmlsafe.find_local(root, "User")
    root_el = xmlsafe.find_local(root, "Root")

    def access_of(name: str) -> str | None:
        el = xmlsafe.find_local(root, name)
        if el is None:
            return None
        fqdn, port = el.get("fqdn"), el.get("port")
        return f"{fqdn}:{port}" if fqdn and port else fqdn

    if any(k.lower() == "redirect" for k in links) and len(links) == 1:
        resource = "redirect"
    elif user_el is not None:
        resource = "user"
    elif root_el is not None:
        resource = "root"
    else:
        resource = "unknown"
    return AutodiscoverInfo(
        resource=resource,
        links=links,
        access_location=access,
        sip_internal=access_of("SipClientInternalAccess"),
        sip_external=access_of("SipClientExternalAccess"),
    )


def parse(body: bytes, content_type: str | None = None) -> AutodiscoverInfo:
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        try:
            return _from_json(json.loads(stripped.decode("utf-8", "replace")))
        except json.JSONDecodeError as exc:
            raise MalformedError(f"bad Autodiscover JSON: {exc}") from exc
    if stripped.startswith(b"<"):
        return _from_xml(stripped)
    raise MalformedError("Autodiscover body is neither JSON nor XML")


def try_parse(body: bytes, content_type: str | None = None) -> AutodiscoverInfo | None:
    """`parse`, or None for what is not such a document.  The same bodies come again and again
    (every client of a pool fetches the same documents, NTLM sends a request body three times),
    so the results for the latest 256 distinct bodies are kept (frozen records, only ever read)."""
    return _try_parse(bytes(body), content_type)


@functools.lru_cache(maxsize=_RECENT)
def _try_parse(body: bytes, content_type: str | None = None) -> AutodiscoverInfo | None:
    if not body:
        return None
    try:
        return parse(body, content_type)
    except MalformedError:
        return None
