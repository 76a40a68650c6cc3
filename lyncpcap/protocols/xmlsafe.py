"""Safe XML parsing for bodies taken from captures: no DTDs, no entities, bounded size.

Lync SOAP/WSDL/Autodiscover documents are matched by local element names, since prefixes vary.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from lyncpcap.errors import MalformedError

MAX_XML_BYTES = 2 * 1024 * 1024


def parse(data: bytes) -> Element:
    if len(data) > MAX_XML_BYTES:
        raise MalformedError("XML document too large")
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedError(f"unsafe XML refused: {type(exc).__name__}") from exc
    except SafeET.ParseError as exc:
        raise MalformedError(f"bad XML: {exc}") from exc


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag.split(":")[-1]


def iter_local(root: Element, name: str) -> Iterator[Element]:
    for el in root.iter():
        if isinstance(el.tag, str) and local(el.tag) == name:
            yield el


def find_local(root: Element, name: str) -> Element | None:
    return next(iter_local(root, name), None)


def text_of(root: Element, name: str) -> str | None:
    el = find_local(root, name)
    if el is None:
        return None
    return "".join(el.itertext()).strip()


def attr_local(el: Element, name: str) -> str | None:
    for k, v in el.attrib.items():
        if local(k) == name:
            return v
    return None


def looks_like_xml(data: bytes) -> bool:
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")
