"""A minimal, strict DER/BER reader (ITU-T X.690) for the ASN.1 that sign-ins carry.

Kerberos, SPNEGO and X.509 are all DER; this reads definite lengths only, over `memoryview`
slices of the caller's buffer, and raises `MalformedError` on anything that breaks the rules.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from lyncpcap.errors import MalformedError

MAX_DEPTH = 32
"""Deepest nesting `Element.children` will descend to (Kerberos needs about 12)."""
MAX_LENGTH_OCTETS = 4
"""Long-form lengths may use at most this many octets (4 GiB is far beyond any real token)."""
MAX_TAG_OCTETS = 4
"""High-tag-number form may use at most this many subsequent octets."""
MAX_INTEGER_OCTETS = 64
"""`integer()` refuses longer encodings; X.509 serial numbers (≤ 20 octets) fit, bignums do not."""


class TagClass(enum.IntEnum):
    """X.690 §8.1.2.2 identifier-octet classes."""

    UNIVERSAL = 0
    APPLICATION = 1
    CONTEXT = 2
    PRIVATE = 3


class Tag(enum.IntEnum):
    """Universal tag numbers used by the decoders (X.680 §8.4)."""

    BOOLEAN = 1
    INTEGER = 2
    BIT_STRING = 3
    OCTET_STRING = 4
    NULL = 5
    OBJECT_IDENTIFIER = 6
    ENUMERATED = 10
    UTF8_STRING = 12
    SEQUENCE = 16
    SET = 17
    NUMERIC_STRING = 18
    PRINTABLE_STRING = 19
    T61_STRING = 20
    VIDEOTEX_STRING = 21
    IA5_STRING = 22
    UTC_TIME = 23
    GENERALIZED_TIME = 24
    GRAPHIC_STRING = 25
    VISIBLE_STRING = 26
    GENERAL_STRING = 27
    UNIVERSAL_STRING = 28
    BMP_STRING = 30


_CLASS_NAMES = {0: "UNIVERSAL", 1: "APPLICATION", 2: "CONTEXT", 3: "PRIVATE"}

# String types whose octets are (a superset of) ASCII; KerberosString is GeneralString but
# Windows puts UTF-8 in it, so these decode as UTF-8 with a Latin-1 fallback.
_BYTE_STRINGS = frozenset(
    {
        Tag.UTF8_STRING,
        Tag.NUMERIC_STRING,
        Tag.PRINTABLE_STRING,
        Tag.T61_STRING,
        Tag.VIDEOTEX_STRING,
        Tag.IA5_STRING,
        Tag.GRAPHIC_STRING,
        Tag.VISIBLE_STRING,
        Tag.GENERAL_STRING,
        Tag.OCTET_STRING,
    }
)


def _view(data: bytes | bytearray | memoryview) -> memoryview:
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


@dataclass(frozen=True, slots=True)
class Element:
    """One TLV: identifier, the content octets (`value`) and the whole encoding (`encoded`)."""

    tag_class: TagClass
    constructed: bool
    tag_number: int
    value: memoryview
    encoded: memoryview
    depth: int = 0

    # -- identity ---------------------------------------------------------------------------

    def is_tag(self, tag_class: TagClass, tag_number: int, constructed: bool | None = None) -> bool:
        if self.tag_class != tag_class or self.tag_number != tag_number:
            return False
        return constructed is None or self.constructed == constructed

    def expect(self, tag_class: TagClass, tag_number: int, constructed: bool | None = None) -> Element:
        """Return self if the identifier matches, else raise `MalformedError`."""
        if not self.is_tag(tag_class, tag_number, constructed):
            want = f"[{_CLASS_NAMES[tag_class]} {tag_number}]"
            raise MalformedError(f"expected {want}, found {self.describe()}")
        return self

    def expect_universal(self, tag: Tag) -> Element:
        constructed = tag in (Tag.SEQUENCE, Tag.SET)
        if not self.is_tag(TagClass.UNIVERSAL, tag, constructed):
            raise MalformedError(f"expected {tag.name}, found {self.describe()}")
        return self

    def describe(self) -> str:
        form = "constructed" if self.constructed else "primitive"
        if self.tag_class == TagClass.UNIVERSAL:
            try:
                name = Tag(self.tag_number).name
            except ValueError:
                name = f"UNIVERSAL {self.tag_number}"
            return f"{name} ({form})"
        return f"[{_CLASS_NAMES[self.tag_class]} {self.tag_number}] ({form})"

    # -- structure --------------------------------------------------------------------------

    def children(self) -> tuple[Element, ...]:
        """The elements inside a constructed encoding (SEQUENCE, SET, explicit tags …)."""
        if not self.constructed:
            raise MalformedError(f"{self.describe()} is not constructed")
        if self.depth + 1 > MAX_DEPTH:
            raise MalformedError(f"nesting deeper than {MAX_DEPTH}")
        mv = self.value
        depth = self.depth + 1
        out = []
        pos = 0
        end = len(mv)
        while pos < end:
            element, pos = _read(mv, pos, depth)
            out.append(element)
        return tuple(out)

    def inner(self) -> Element:
        """The single element inside an EXPLICIT tag."""
        kids = self.children()
        if len(kids) != 1:
            raise MalformedError(f"{self.describe()} holds {len(kids)} elements, expected 1")
        return kids[0]

    def sequence(self) -> tuple[Element, ...]:
        """Children of a universal SEQUENCE (also SEQUENCE OF)."""
        return self.expect_universal(Tag.SEQUENCE).children()

    def fields(self) -> dict[int, Element]:
        """A SEQUENCE whose components are all EXPLICIT context tags: {tag number: inner element}.

        The tags must be strictly increasing (DER component order), as RFC 4120 / RFC 4178 define them.
        """
        out: dict[int, Element] = {}
        last = -1
        for child in self.sequence():
            if child.tag_class != TagClass.CONTEXT or not child.constructed:
                raise MalformedError(
                    f"expected an explicit context tag in SEQUENCE, found {child.describe()}"
                )
            if child.tag_number <= last:
                raise MalformedError(f"context tag [{child.tag_number}] out of order or repeated")
            last = child.tag_number
            out[child.tag_number] = child.inner()
        return out

    # -- primitive values -------------------------------------------------------------------

    def _primitive(self, what: str) -> memoryview:
        if self.constructed:
            raise MalformedError(f"{what} must be primitive, found {self.describe()}")
        return self.value

    def integer(self) -> int:
        """INTEGER / ENUMERATED content (any tag; the caller checks the tag if it cares)."""
        return decode_integer(self._primitive("INTEGER"))

    def boolean(self) -> bool:
        v = self._primitive("BOOLEAN")
        if len(v) != 1:
            raise MalformedError("BOOLEAN must be one octet")
        return v[0] != 0

    def octets(self) -> bytes:
        return bytes(self._primitive("OCTET STRING"))

    def bit_string(self) -> tuple[int, bytes]:
        """(number of unused bits, octets) of a BIT STRING."""
        v = self._primitive("BIT STRING")
        if len(v) < 1:
            raise MalformedError("empty BIT STRING")
        unused = v[0]
        if unused > 7 or (unused and len(v) == 1):
            raise MalformedError("bad BIT STRING unused-bit count")
        return unused, bytes(v[1:])

    def oid(self) -> str:
        self.expect(TagClass.UNIVERSAL, Tag.OBJECT_IDENTIFIER, False)
        return decode_oid(self.value)

    def string(self) -> str:
        """Text of any ASN.1 character string type (and OCTET STRING holding text)."""
        v = self._primitive("string")
        if self.tag_class == TagClass.UNIVERSAL and self.tag_number == Tag.BMP_STRING:
            if len(v) % 2:
                raise MalformedError("BMPString of odd length")
            return bytes(v).decode("utf-16-be", errors="replace")
        if self.tag_class == TagClass.UNIVERSAL and self.tag_number == Tag.UNIVERSAL_STRING:
            if len(v) % 4:
                raise MalformedError("UniversalString length not a multiple of 4")
            return bytes(v).decode("utf-32-be", errors="replace")
        if self.tag_class == TagClass.UNIVERSAL and self.tag_number not in _BYTE_STRINGS:
            raise MalformedError(f"expected a character string, found {self.describe()}")
        return decode_text(v)

    def time(self) -> datetime:
        """GeneralizedTime or UTCTime as an aware UTC datetime."""
        v = self._primitive("time")
        if self.is_tag(TagClass.UNIVERSAL, Tag.GENERALIZED_TIME):
            return decode_generalized_time(v)
        if self.is_tag(TagClass.UNIVERSAL, Tag.UTC_TIME):
            return decode_utc_time(v)
        raise MalformedError(f"expected a time, found {self.describe()}")


# -- reading TLVs -----------------------------------------------------------------------------


_TAG_CLASSES = tuple(TagClass)  # by the two top bits of the identifier octet


def read_element(
    data: bytes | bytearray | memoryview, offset: int = 0, *, depth: int = 0
) -> tuple[Element, int]:
    """Read one TLV starting at `offset`; return it and the offset just past it."""
    return _read(_view(data), offset, depth)


def _read(mv: memoryview, offset: int, depth: int) -> tuple[Element, int]:
    """`read_element` over a byte memoryview (what children and iteration already hold)."""
    end = len(mv)
    pos = offset
    if pos >= end:
        raise MalformedError("no ASN.1 element: data ends")
    first = mv[pos]
    pos += 1
    tag_class = _TAG_CLASSES[first >> 6]
    constructed = bool(first & 0x20)
    number = first & 0x1F
    if number == 0x1F:
        number = 0
        for count in range(MAX_TAG_OCTETS + 1):
            if count == MAX_TAG_OCTETS:
                raise MalformedError("tag number too long")
            if pos >= end:
                raise MalformedError("truncated tag")
            b = mv[pos]
            pos += 1
            if count == 0 and b == 0x80:
                raise MalformedError("tag number with leading zero bits")
            number = (number << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        if number < 0x1F:
            raise MalformedError("low tag number in high-tag-number form")
    if pos >= end:
        raise MalformedError("truncated length")
    lb = mv[pos]
    pos += 1
    if lb < 0x80:
        length = lb
    elif lb == 0x80:
        raise MalformedError("indefinite length is not allowed")
    elif lb == 0xFF:
        raise MalformedError("reserved length octet 0xFF")
    else:
        n = lb & 0x7F
        if n > MAX_LENGTH_OCTETS:
            raise MalformedError(f"length uses {n} octets")
        if pos + n > end:
            raise MalformedError("truncated length")
        length = int.from_bytes(mv[pos : pos + n], "big")
        pos += n
    if length > end - pos:
        raise MalformedError(f"element of {length} octets but only {end - pos} remain")
    content = mv[pos : pos + length]
    element = Element(tag_class, constructed, number, content, mv[offset : pos + length], depth)
    return element, pos + length


def iter_elements(data: bytes | bytearray | memoryview, *, depth: int = 0) -> Iterator[Element]:
    """Every TLV laid end to end in `data` (the content of a constructed element)."""
    mv = _view(data)
    pos = 0
    while pos < len(mv):
        element, pos = _read(mv, pos, depth)
        yield element


def decode(data: bytes | bytearray | memoryview, *, allow_trailing: bool = False) -> Element:
    """Exactly one TLV (optionally followed by ignored bytes)."""
    element, end = read_element(data, 0)
    if not allow_trailing and end != len(_view(data)):
        raise MalformedError(f"{len(_view(data)) - end} bytes after the ASN.1 element")
    return element


def peek_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int] | None:
    """(identifier octet, header length, content length) of a TLV that may be incomplete.

    For cheap sniffing of a first segment: returns None when the header itself is cut or invalid
    (indefinite/oversized length, high tag number); never raises.
    """
    mv = _view(data)
    if len(mv) < 2 or (mv[0] & 0x1F) == 0x1F:
        return None
    lb = mv[1]
    if lb < 0x80:
        return mv[0], 2, lb
    n = lb & 0x7F
    if n == 0 or n > MAX_LENGTH_OCTETS or len(mv) < 2 + n:
        return None
    return mv[0], 2 + n, int.from_bytes(mv[2 : 2 + n], "big")


# -- value decoders ---------------------------------------------------------------------------


def decode_integer(value: memoryview | bytes) -> int:
    if len(value) == 0:
        raise MalformedError("empty INTEGER")
    if len(value) > MAX_INTEGER_OCTETS:
        raise MalformedError(f"INTEGER of {len(value)} octets")
    return int.from_bytes(value, "big", signed=True)


def decode_oid(value: memoryview | bytes) -> str:
    """Dotted text of OBJECT IDENTIFIER content octets (X.690 §8.19)."""
    if len(value) == 0:
        raise MalformedError("empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    acc = 0
    started = False
    octets = 0
    for b in bytes(value):
        if not started and b == 0x80:
            raise MalformedError("OBJECT IDENTIFIER arc with leading zero bits")
        started = True
        octets += 1
        if octets > 16:
            raise MalformedError("OBJECT IDENTIFIER arc too long")
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
            started = False
            octets = 0
    if started:
        raise MalformedError("truncated OBJECT IDENTIFIER")
    first = arcs[0]
    if first < 40:
        head = [0, first]
    elif first < 80:
        head = [1, first - 40]
    else:
        head = [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def encode_oid(dotted: str) -> bytes:
    """Content octets of an OBJECT IDENTIFIER (used to build the constant OIDs we match on)."""
    try:
        arcs = [int(a) for a in dotted.split(".")]
    except ValueError as exc:
        raise MalformedError(f"bad OID text {dotted!r}") from exc
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise MalformedError(f"bad OID text {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def decode_text(value: memoryview | bytes) -> str:
    """UTF-8 if it is valid, otherwise Latin-1 (one character per octet, never fails)."""
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _digits(text: str, start: int, count: int) -> int:
    part = text[start : start + count]
    if len(part) != count or not part.isdigit() or not part.isascii():
        raise MalformedError(f"bad time text {text!r}")
    return int(part)


def _make_time(text: str, year: int, rest: int) -> tuple[datetime, int]:
    """Month, day, hour, minute and optional seconds from `rest`; return the datetime and next index."""
    month = _digits(text, rest, 2)
    day = _digits(text, rest + 2, 2)
    hour = _digits(text, rest + 4, 2)
    minute = _digits(text, rest + 6, 2)
    pos = rest + 8
    second = 0
    if pos + 1 < len(text) and text[pos].isdigit():
        second = _digits(text, pos, 2)
        pos += 2
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC), pos
    except ValueError as exc:
        raise MalformedError(f"bad time {text!r}") from exc


def _zone(text: str, pos: int, when: datetime) -> datetime:
    tail = text[pos:]
    if tail == "Z":
        return when
    if len(tail) == 5 and tail[0] in "+-":
        hours = _digits(tail, 1, 2)
        minutes = _digits(tail, 3, 2)
        if hours > 23 or minutes > 59:
            raise MalformedError(f"bad time zone in {text!r}")
        offset = timedelta(hours=hours, minutes=minutes)
        if tail[0] == "-":
            offset = -offset
        try:
            return when.replace(tzinfo=timezone(offset)).astimezone(UTC)
        except OverflowError as exc:
            raise MalformedError(f"time {text!r} is out of range") from exc
    raise MalformedError(f"time {text!r} has no UTC designator")


def decode_generalized_time(value: memoryview | bytes) -> datetime:
    """GeneralizedTime `YYYYMMDDHHMM[SS[.fff]](Z|±hhmm)` (KerberosTime is the Z form, no fraction)."""
    text = bytes(value).decode("ascii", errors="replace")
    year = _digits(text, 0, 4)
    when, pos = _make_time(text, year, 4)
    if pos < len(text) and text[pos] in ".,":
        end = pos + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        frac = text[pos + 1 : end]
        if not frac or not frac.isascii():
            raise MalformedError(f"bad fraction in {text!r}")
        try:
            when += timedelta(microseconds=int((frac + "000000")[:6]))
        except OverflowError as exc:
            raise MalformedError(f"time {text!r} is out of range") from exc
        pos = end
    return _zone(text, pos, when)


def decode_utc_time(value: memoryview | bytes) -> datetime:
    """UTCTime `YYMMDDHHMM[SS](Z|±hhmm)`; years 50–99 are 19xx, 00–49 are 20xx (RFC 5280)."""
    text = bytes(value).decode("ascii", errors="replace")
    yy = _digits(text, 0, 2)
    when, pos = _make_time(text, 1900 + yy if yy >= 50 else 2000 + yy, 2)
    return _zone(text, pos, when)


# -- building (tests and constant tokens) ----------------------------------------------------


def encode_tlv(first_octet: int, content: bytes) -> bytes:
    """DER TLV with a low tag number identifier octet (enough for the tokens we construct)."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        body = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(body)]) + body
    return bytes([first_octet]) + length + content
