"""DNS queries and responses (RFC 1035, SRV per RFC 2782) for the lab's sample captures.

Responses use name compression the way Windows DNS servers do: owner names point back into the
question, and CNAME/NS/PTR/SOA targets are compressed too; SRV targets are not (RFC 2782).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

QTYPES: dict[str, int] = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES: dict[str, int] = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
CLASS_IN = 1

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_RD = 0x0100
FLAG_RA = 0x0080


def _labels(name: str) -> list[bytes]:
    name = name.rstrip(".")
    if not name:
        return []
    labels = [part.encode("idna") if not part.isascii() else part.encode() for part in name.split(".")]
    for label in labels:
        if not 0 < len(label) < 64:
            raise ValueError(f"bad label in DNS name {name!r}")
    if sum(len(lb) + 1 for lb in labels) + 1 > 255:
        raise ValueError(f"DNS name too long: {name!r}")
    return labels


def encode_name(name: str) -> bytes:
    """A name as uncompressed labels."""
    return b"".join(bytes([len(lb)]) + lb for lb in _labels(name)) + b"\x00"


class _Writer:
    """Accumulates a message and remembers where each name suffix was written, for compression."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.suffixes: dict[tuple[bytes, ...], int] = {}

    def name(self, name: str, *, compress: bool = True) -> None:
        labels = _labels(name)
        for i in range(len(labels)):
            key = tuple(lb.lower() for lb in labels[i:])
            if compress and key in self.suffixes:
                self.buf += struct.pack("!H", 0xC000 | self.suffixes[key])
                return
            if len(self.buf) < 0x4000:
                self.suffixes.setdefault(key, len(self.buf))
            self.buf += bytes([len(labels[i])]) + labels[i]
        self.buf.append(0)


def query(qid: int, name: str, qtype: str, *, recursion_desired: bool = True) -> bytes:
    """A standard query for `name` (`qtype` "A", "AAAA", "SRV", "CNAME", "SOA", "NS", "PTR", "TXT")."""
    code = _qtype(qtype)
    flags = FLAG_RD if recursion_desired else 0
    return (
        struct.pack("!HHHHHH", qid & 0xFFFF, flags, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", code, CLASS_IN)
    )


def _qtype(qtype: str) -> int:
    try:
        return QTYPES[qtype.upper()]
    except KeyError:
        raise ValueError(f"unsupported DNS type {qtype!r}; one of {sorted(QTYPES)}") from None


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """Decode a (possibly compressed) name at `pos`; returns it and the offset after it."""
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if pos >= len(msg):
            raise ValueError("DNS name runs past the message")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if end < 0:
                end = pos + 2
            pos = struct.unpack("!H", msg[pos : pos + 2])[0] & 0x3FFF
            jumps += 1
            if jumps > 64:
                raise ValueError("DNS compression loop")
            continue
        if length == 0:
            return ".".join(labels), (end if end >= 0 else pos + 1)
        labels.append(msg[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length


def parse_question(message: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, qname, qtype, qclass) of a message with one question."""
    if len(message) < 12:
        raise ValueError("DNS message shorter than its header")
    qid, flags, qdcount = struct.unpack("!HHH", message[:6])
    if qdcount != 1:
        raise ValueError("expected exactly one question")
    name, pos = _read_name(message, 12)
    qtype, qclass = struct.unpack("!HH", message[pos : pos + 4])
    return qid, flags, name, qtype, qclass


def _rdata(w: _Writer, rtype: str, value: str) -> None:
    """Append RDLENGTH + RDATA for `value` to the writer (names may be compressed)."""
    start = len(w.buf)
    w.buf += b"\x00\x00"
    if rtype == "A":
        w.buf += ipaddress.IPv4Address(value).packed
    elif rtype == "AAAA":
        w.buf += ipaddress.IPv6Address(value).packed
    elif rtype in ("CNAME", "NS", "PTR"):
        w.name(value)
    elif rtype == "SRV":
        parts = value.split()
        if len(parts) != 4:
            raise ValueError(f"SRV value is 'priority weight port target', not {value!r}")
        w.buf += struct.pack("!HHH", int(parts[0]), int(parts[1]), int(parts[2]))
        w.name(parts[3], compress=False)
    elif rtype == "TXT":
        data = value.encode()
        for i in range(0, max(len(data), 1), 255):
            chunk = data[i : i + 255]
            w.buf += bytes([len(chunk)]) + chunk
    elif rtype == "SOA":
        mname, rname, *numbers = _soa_fields(value)
        w.name(mname)
        w.name(rname)
        w.buf += struct.pack("!IIIII", *numbers)
    else:
        raise ValueError(f"unsupported record type {rtype!r}")
    struct.pack_into("!H", w.buf, start, len(w.buf) - start - 2)


def _soa_fields(value: str) -> tuple[str, str, int, int, int, int, int]:
    parts = value.split()
    if len(parts) != 7:
        raise ValueError(f"SOA value is 'mname rname serial refresh retry expire minimum', not {value!r}")
    return parts[0], parts[1], int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5]), int(parts[6])


def _soa(authority_soa: str) -> tuple[str, str]:
    """`authority_soa` is either a zone ("contoso.com") or a zone followed by the seven SOA fields."""
    parts = authority_soa.split()
    if len(parts) == 1:
        zone = parts[0].rstrip(".")
        return zone, f"dc01.{zone} hostmaster.{zone} 2024010101 900 600 86400 3600"
    if len(parts) == 8:
        return parts[0].rstrip("."), " ".join(parts[1:])
    raise ValueError("authority_soa is 'zone' or 'zone mname rname serial refresh retry expire minimum'")


def response(
    query: bytes,
    *,
    rcode: str = "NOERROR",
    answers: Sequence[tuple[str, str, str]] = (),
    ttl: int = 3600,
    authority_soa: str | None = None,
    authoritative: bool = True,
) -> bytes:
    """The response to `query`: answers are (name, type, value) — A "10.0.0.10", AAAA, CNAME
    "target.contoso.com", SRV "0 0 5061 pool01.contoso.com", PTR, NS, TXT.  `authority_soa` (a zone,
    or a zone and its SOA fields) adds an SOA in the authority section, as NXDOMAIN and NODATA
    answers carry; its TTL is the SOA minimum."""
    if rcode.upper() not in RCODES:
        raise ValueError(f"unknown rcode {rcode!r}; one of {sorted(RCODES)}")
    qid, qflags, qname, qtype, qclass = parse_question(query)
    flags = FLAG_QR | (qflags & (0x7800 | FLAG_RD)) | FLAG_RA | RCODES[rcode.upper()]
    if authoritative:
        flags |= FLAG_AA
    w = _Writer()
    w.buf += struct.pack("!HHHHHH", qid, flags, 1, len(answers), 1 if authority_soa else 0, 0)
    w.name(qname)
    w.buf += struct.pack("!HH", qtype, qclass)
    for name, rtype, value in answers:
        rtype = rtype.upper()
        w.name(name)
        w.buf += struct.pack("!HHI", _qtype(rtype), CLASS_IN, ttl)
        _rdata(w, rtype, value)
    if authority_soa:
        zone, fields = _soa(authority_soa)
        w.name(zone)
        w.buf += struct.pack("!HHI", QTYPES["SOA"], CLASS_IN, _soa_fields(fields)[6])
        _rdata(w, "SOA", fields)
    return bytes(w.buf)


def tcp_record(message: bytes) -> bytes:
    """A DNS message as sent over TCP: a two-byte length, then the message (RFC 1035 §4.2.2)."""
    return struct.pack("!H", len(message)) + message
