"""Wireshark exported-PDU frames (link type 252, LINKTYPE_WIRESHARK_UPPER_PDU): the tags in front of
each PDU give its addresses, ports, protocol and the frame it came from in the original capture.

Wireshark writes these with "File › Export PDUs to File…" and tshark with `-U "OSI layer 7"`; for
decrypted TLS each PDU is the plaintext of one record (or, with application-data desegmentation on,
what the HTTP/SIP dissector was handed).  Layout per the Wireshark wiki ("Protocols/exported_pdu"):
a list of (tag: u16, length: u16, value) in network byte order, the value's length counting its
padding, ended by tag 0; the PDU bytes follow.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.read.layers import address_text

__all__ = [
    "LINKTYPE_WIRESHARK_UPPER_PDU",
    "PORT_TCP",
    "PORT_UDP",
    "TLS_PORTS",
    "ExportedPdu",
    "build_exported_pdu",
    "parse_exported_pdu",
]

LINKTYPE_WIRESHARK_UPPER_PDU = 252

# Tag numbers (wsutil/exported_pdu_tlvs.h)
TAG_END_OF_OPT = 0
TAG_OPTIONS_LENGTH = 10
TAG_LINKTYPE = 11
TAG_DISSECTOR_NAME = 12
TAG_HEUR_DISSECTOR_NAME = 13
TAG_DISSECTOR_TABLE_NAME = 14
TAG_IPV4_SRC = 20
TAG_IPV4_DST = 21
TAG_IPV6_SRC = 22
TAG_IPV6_DST = 23
TAG_PORT_TYPE = 24
TAG_SRC_PORT = 25
TAG_DST_PORT = 26
TAG_ORIG_FRAME_NUMBER = 30
TAG_COL_PROTO_STR = 33

# Port types (EXP_PDU_PT_*)
PORT_TCP = 2
PORT_UDP = 3

_TAG = struct.Struct("!HH")
_U32 = struct.Struct("!I")
#: Protocol names that say the PDU was carried in TLS (Wireshark's dissector and heuristic names).
_TLS_NAMES = ("tls", "ssl")
#: Ports that carry TLS in a Lync deployment: HTTPS (443, 444 and 4443 on the Front End, 8443 and
#: 49443 on some proxies and AD FS) and SIP over TLS (5061).  A PDU exported from TLS on 5061 is
#: named plain "sip", so the port has to tell.
TLS_PORTS = frozenset({443, 444, 4443, 5061, 8443, 49443})


@dataclass(frozen=True, slots=True)
class ExportedPdu:
    """One exported PDU with the metadata Wireshark stored in front of it."""

    payload: bytes
    protocol: str | None = None  # dissector, heuristic dissector or table name, as written
    src: str | None = None
    dst: str | None = None
    port_type: int | None = None  # PORT_TCP, PORT_UDP, …
    src_port: int | None = None
    dst_port: int | None = None
    orig_frame: int | None = None  # frame number in the capture it was exported from

    @property
    def over_tls(self) -> bool:
        """Decrypted bytes: the exporting dissector names TLS ("http-over-tls", "http_tls"), or the
        PDU ran on a port that carries TLS."""
        name = (self.protocol or "").lower()
        return any(t in name for t in _TLS_NAMES) or self.src_port in TLS_PORTS or self.dst_port in TLS_PORTS


def _text(value: bytes) -> str:
    return value.split(b"\x00", 1)[0].decode("ascii", "replace")


_ADDRESS_TAGS = {TAG_IPV4_SRC: 4, TAG_IPV4_DST: 4, TAG_IPV6_SRC: 16, TAG_IPV6_DST: 16}
_NAME_TAGS = (TAG_DISSECTOR_NAME, TAG_HEUR_DISSECTOR_NAME, TAG_DISSECTOR_TABLE_NAME)
_NUMBER_TAGS = (TAG_PORT_TYPE, TAG_SRC_PORT, TAG_DST_PORT, TAG_ORIG_FRAME_NUMBER)


def parse_exported_pdu(data: bytes | memoryview) -> ExportedPdu:
    """Split one link-type-252 frame into its tags and PDU; `MalformedError` when the tags run past
    the frame or an address or number tag has the wrong size."""
    buf = data if isinstance(data, bytes) else bytes(data)
    pos = 0
    end = len(buf)
    names: dict[int, str] = {}
    addresses: dict[int, str] = {}
    numbers: dict[int, int] = {}
    tag_at = _TAG.unpack_from
    while True:
        if end - pos < 4:
            raise MalformedError("exported PDU tags run past the end of the frame")
        tag, length = tag_at(buf, pos)
        pos += 4
        if tag == TAG_END_OF_OPT:
            pos += length  # its length is 0 in every writer; honour it if not
            break
        stop = pos + length
        if stop > end:
            raise MalformedError(f"exported PDU tag {tag} claims {length} bytes past the end of the frame")
        if tag in _ADDRESS_TAGS:
            size = _ADDRESS_TAGS[tag]
            if length < size:
                raise MalformedError(f"exported PDU address tag {tag} of {length} bytes")
            addresses[tag] = address_text(buf[pos : pos + size])
        elif tag in _NUMBER_TAGS:
            if length < 4:
                raise MalformedError(f"exported PDU tag {tag} holds {length} bytes, not 4")
            numbers[tag] = _U32.unpack_from(buf, pos)[0]
        elif tag in _NAME_TAGS:
            names[tag] = _text(buf[pos:stop])
        pos = stop
    if pos > end:
        raise MalformedError("exported PDU tags run past the end of the frame")
    return ExportedPdu(
        payload=buf[pos:],
        protocol=next((names[t] for t in _NAME_TAGS if names.get(t)), None),
        src=addresses.get(TAG_IPV6_SRC) or addresses.get(TAG_IPV4_SRC),
        dst=addresses.get(TAG_IPV6_DST) or addresses.get(TAG_IPV4_DST),
        port_type=numbers.get(TAG_PORT_TYPE),
        src_port=numbers.get(TAG_SRC_PORT),
        dst_port=numbers.get(TAG_DST_PORT),
        orig_frame=numbers.get(TAG_ORIG_FRAME_NUMBER),
    )


def build_exported_pdu(
    payload: bytes,
    *,
    protocol: str | None = None,
    src: str | None = None,
    dst: str | None = None,
    port_type: int | None = None,
    src_port: int | None = None,
    dst_port: int | None = None,
    orig_frame: int | None = None,
) -> bytes:
    """The link-type-252 frame Wireshark would write for `payload` (the lab and tests use it)."""
    out = bytearray()

    def tag(number: int, value: bytes) -> None:
        out.extend(_TAG.pack(number, len(value)))
        out.extend(value)

    if protocol is not None:
        name = protocol.encode("ascii") + b"\x00"
        tag(TAG_DISSECTOR_NAME, name + b"\x00" * (-len(name) % 4))
    for number, addr in ((TAG_IPV4_SRC, src), (TAG_IPV4_DST, dst)):
        if addr is not None and ipaddress.ip_address(addr).version == 4:
            tag(number, ipaddress.IPv4Address(addr).packed)
    for number, addr in ((TAG_IPV6_SRC, src), (TAG_IPV6_DST, dst)):
        if addr is not None and ipaddress.ip_address(addr).version == 6:
            tag(number, ipaddress.IPv6Address(addr).packed)
    for number, value in ((TAG_PORT_TYPE, port_type), (TAG_SRC_PORT, src_port), (TAG_DST_PORT, dst_port),
                          (TAG_ORIG_FRAME_NUMBER, orig_frame)):
        if value is not None:
            tag(number, _U32.pack(value))
    out.extend(_TAG.pack(TAG_END_OF_OPT, 0))
    return bytes(out) + payload
