"""DNS message decoding (RFC 1035 §4, RFC 2782 SRV, RFC 3596 AAAA, RFC 6891 EDNS).

Enough to follow Lync discovery: lyncdiscover A/CNAME lookups and the `_sipinternaltls._tcp` /
`_sip._tls` SRV records, with their answers and rcodes. `DnsTcpFramer` strips DNS-over-TCP lengths.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from lyncpcap.errors import MalformedError

RCODE_NAMES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    11: "DSOTYPENI",
    16: "BADVERS",
    17: "BADKEY",
    18: "BADTIME",
    19: "BADMODE",
    20: "BADNAME",
    21: "BADALG",
    22: "BADTRUNC",
    23: "BADCOOKIE",
}

TYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    24: "SIG",
    25: "KEY",
    28: "AAAA",
    29: "LOC",
    33: "SRV",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    39: "DNAME",
    41: "OPT",
    43: "DS",
    44: "SSHFP",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
    256: "URI",
    257: "CAA",
}

OPCODE_NAMES: dict[int, str] = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX, TYPE_TXT = 1, 2, 5, 6, 12, 15, 16
TYPE_AAAA, TYPE_SRV, TYPE_DNAME, TYPE_OPT = 28, 33, 39, 41
_NAME_TYPES = frozenset({TYPE_NS, TYPE_CNAME, TYPE_PTR, TYPE_DNAME})

HEADER_LEN = 12
MAX_NAME_LEN = 255  # RFC 1035 §2.3.4, in wire octets
MAX_POINTER_HOPS = 64


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record; `value` is its RDATA as text."""

    name: str
    rtype: int
    ttl: int
    value: str  # A/AAAA text, CNAME/PTR/NS/DNAME target, SRV "prio weight port target", MX "pref host", TXT joined, else hex
    srv_port: int | None = None
    srv_target: str | None = None
    rclass: int = 1

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.rtype, f"TYPE{self.rtype}")


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """One DNS message: header facts and the four sections."""

    id: int
    is_response: bool
    opcode: int
    rcode: int  # including the EDNS extended bits when an OPT record is present
    rcode_name: str
    truncated: bool
    questions: tuple[tuple[str, int], ...]
    answers: tuple[DnsRecord, ...]
    authority: tuple[DnsRecord, ...]
    additional: tuple[DnsRecord, ...]
    flags: int = 0  # the 16-bit flags word as sent (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE)


def _escape_label(label: bytes) -> str:
    """Printable ASCII as is; '.', '\\' and everything else as RFC 4343 \\DDD escapes."""
    out = []
    for b in label:
        if 0x21 <= b <= 0x7E and b not in (0x2E, 0x5C):
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def read_name(msg: memoryview, offset: int) -> tuple[str, int]:
    """Decode a possibly compressed name at `offset`; return (name without trailing dot, offset after it).

    Pointers must point strictly backwards (each hop to an earlier offset), so a loop is impossible,
    and the expanded name may not exceed 255 octets. The root name is returned as ".".
    """
    labels: list[str] = []
    pos = offset
    end_of_name: int | None = None
    wire_len = 1
    hops = 0
    limit = offset  # a pointer must point below the lowest position read so far
    while True:
        if pos >= len(msg):
            raise MalformedError("DNS name runs past the end of the message")
        length = msg[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(msg):
                raise MalformedError("truncated DNS compression pointer")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if end_of_name is None:
                end_of_name = pos + 2
            if target >= limit:
                raise MalformedError("DNS compression pointer does not point backwards")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise MalformedError("too many DNS compression pointers")
            pos = limit = target
            continue
        if kind:
            raise MalformedError(f"unsupported DNS label type 0x{kind:02x}")
        if length == 0:
            if end_of_name is None:
                end_of_name = pos + 1
            break
        if pos + 1 + length > len(msg):
            raise MalformedError("DNS label runs past the end of the message")
        wire_len += length + 1
        if wire_len > MAX_NAME_LEN:
            raise MalformedError("DNS name longer than 255 octets")
        labels.append(_escape_label(bytes(msg[pos + 1 : pos + 1 + length])))
        pos += 1 + length
    return (".".join(labels) if labels else "."), end_of_name


def _character_strings(rdata: memoryview) -> list[str]:
    out = []
    pos = 0
    while pos < len(rdata):
        n = rdata[pos]
        if pos + 1 + n > len(rdata):
            raise MalformedError("TXT character-string runs past its record")
        out.append(bytes(rdata[pos + 1 : pos + 1 + n]).decode("utf-8", errors="replace"))
        pos += 1 + n
    return out


def _rdata(msg: memoryview, rtype: int, start: int, length: int) -> tuple[str, int | None, str | None]:
    """(value text, SRV port, SRV target) for one record's RDATA at msg[start:start+length]."""
    end = start + length
    rdata = msg[start:end]

    def name_at(at: int, last: bool = True) -> tuple[str, int]:
        name, after = read_name(msg, at)
        if after > end or (last and after != end):
            raise MalformedError(f"{TYPE_NAMES.get(rtype, rtype)} RDATA length does not match its name")
        return name, after

    if rtype == TYPE_A:
        if length != 4:
            raise MalformedError("A record RDATA is not 4 octets")
        return str(ipaddress.IPv4Address(bytes(rdata))), None, None
    if rtype == TYPE_AAAA:
        if length != 16:
            raise MalformedError("AAAA record RDATA is not 16 octets")
        return str(ipaddress.IPv6Address(bytes(rdata))), None, None
    if rtype in _NAME_TYPES:
        return name_at(start)[0], None, None
    if rtype == TYPE_MX:
        if length < 3:
            raise MalformedError("MX RDATA too short")
        (pref,) = struct.unpack_from("!H", msg, start)
        return f"{pref} {name_at(start + 2)[0]}", None, None
    if rtype == TYPE_SRV:
        if length < 7:
            raise MalformedError("SRV RDATA too short")
        prio, weight, port = struct.unpack_from("!HHH", msg, start)
        target = name_at(start + 6)[0]
        return f"{prio} {weight} {port} {target}", port, target
    if rtype == TYPE_TXT:
        return "".join(_character_strings(rdata)), None, None
    if rtype == TYPE_SOA:
        mname, after = name_at(start, last=False)
        rname, after = name_at(after, last=False)
        if end - after != 20:
            raise MalformedError("SOA RDATA has the wrong length")
        serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", msg, after)
        return f"{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}", None, None
    return bytes(rdata).hex(), None, None


def _record(msg: memoryview, pos: int) -> tuple[DnsRecord, int]:
    name, pos = read_name(msg, pos)
    if pos + 10 > len(msg):
        raise MalformedError("truncated DNS resource record")
    rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", msg, pos)
    pos += 10
    if pos + rdlength > len(msg):
        raise MalformedError("DNS RDATA runs past the end of the message")
    value, srv_port, srv_target = _rdata(msg, rtype, pos, rdlength)
    return DnsRecord(name, rtype, ttl, value, srv_port, srv_target, rclass), pos + rdlength


def parse(data: bytes | bytearray | memoryview) -> DnsMessage:
    """Decode one DNS message (a UDP payload, or a TCP message without its 2-byte length)."""
    msg = data if isinstance(data, memoryview) else memoryview(data)
    msg = msg.cast("B") if msg.format != "B" or msg.ndim != 1 else msg
    if len(msg) < HEADER_LEN:
        raise MalformedError("DNS message shorter than its header")
    ident, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHHH", msg, 0)
    # Each question takes at least 5 octets and each record 11: reject impossible counts up front.
    if qdcount * 5 + (ancount + nscount + arcount) * 11 > len(msg) - HEADER_LEN:
        raise MalformedError("DNS section counts exceed the message size")
    pos = HEADER_LEN
    questions = []
    for _ in range(qdcount):
        qname, pos = read_name(msg, pos)
        if pos + 4 > len(msg):
            raise MalformedError("truncated DNS question")
        qtype, _qclass = struct.unpack_from("!HH", msg, pos)
        pos += 4
        questions.append((qname, qtype))
    sections: list[list[DnsRecord]] = [[], [], []]
    for section, count in zip(sections, (ancount, nscount, arcount), strict=True):
        for _ in range(count):
            record, pos = _record(msg, pos)
            section.append(record)
    rcode = flags & 0x000F
    for record in sections[2]:
        if record.rtype == TYPE_OPT:
            rcode |= (record.ttl >> 24) << 4  # RFC 6891 §6.1.3 EXTENDED-RCODE
            break
    return DnsMessage(
        id=ident,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0x0F,
        rcode=rcode,
        rcode_name=RCODE_NAMES.get(rcode, f"RCODE{rcode}"),
        truncated=bool(flags & 0x0200),
        questions=tuple(questions),
        answers=tuple(sections[0]),
        authority=tuple(sections[1]),
        additional=tuple(sections[2]),
        flags=flags,
    )


class DnsTcpFramer:
    """Splits one direction of a DNS-over-TCP stream into messages (RFC 1035 §4.2.2 / RFC 7766 §8).

    `feed` never raises. A length below the 12-octet header counts in `malformed`; the framer then
    cannot find message boundaries again and ignores the rest of the stream (`skipped_bytes`) until
    `reset()`. Buffering is bounded by one message (64 KiB) plus the data just fed.
    """

    def __init__(self) -> None:
        self.malformed = 0
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._lost = False

    @property
    def pending(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._lost = False

    def gap(self) -> None:
        """Bytes were lost: message boundaries are unknown from here on."""
        self.skipped_bytes += len(self._buf)
        self._buf.clear()
        self._lost = True

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._lost:
            self.skipped_bytes += len(data)
            return []
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 2:
            (length,) = struct.unpack_from("!H", self._buf, 0)
            if length < HEADER_LEN:
                self.malformed += 1
                self.gap()
                break
            if len(self._buf) < 2 + length:
                break
            out.append(bytes(self._buf[2 : 2 + length]))
            del self._buf[: 2 + length]
        return out
