"""Safe XML parsing for bodies taken from captures: no DTDs, no entities, bounded size.

Lync SOAP/WSDL/Autodiscover documents are matched by local element names, since prefixes vary.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from lyncpcap.errors import MalformedError

MAX_XML_BYTES = 2 * 1024 * 1024

_DECLARED_ENCODING = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\sencoding\s*=\s*[\"']([^\"']*)[\"']")
#: Encodings in which "<!" can only be written as those two bytes.
_ASCII_ENCODINGS = frozenset({b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1", b"latin-1", b"latin1"})


def _cannot_hold_a_dtd(data: bytes) -> bool:
    """True when `data` has no "<!" in an ASCII-compatible encoding: then it has no DOCTYPE, so no
    entity can be declared or fetched, and the standard (C) parser is exactly as safe as
    defusedxml's, and several times faster.  Comments and CDATA also start with "<!": such
    documents, like any in UTF-16 or another declared encoding, take the careful parser."""
    if b"<!" in data or b"\x00" in data:
        return False
    declared = _DECLARED_ENCODING.match(data)
    return declared is None or declared.group(1).lower() in _ASCII_ENCODINGS


def parse(data: bytes) -> Element:
    if len(data) > MAX_XML_BYTES:
        raise MalformedError("XML document too large")
    try:
        if _cannot_hold_a_dtd(data):
            return ET.fromstring(data)
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedError(f"unsafe XML refused: {type(exc).__name__}") from exc
    except SafeET.ParseError as exc:
        raise MalformedError(f"bad XML: {exc}") from exc
    except (LookupError, ValueError) as exc:  # a declared encoding Python lacks, or a multi-byte one expat cannot read
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
    bom = bytes(data[:2])
    if bom in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its byte-order mark (a .NET client's choice)
        text = bytes(data[2:202]).decode("utf-16-le" if bom == b"\xff\xfe" else "utf-16-be", "ignore")
        return text.lstrip(" \t\r\n").startswith("<")
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")
