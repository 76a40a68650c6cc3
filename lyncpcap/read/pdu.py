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

__all__ = [
    "LINKTYPE_WIRESHARK_UPPER_PDU",
    "PORT_TCP",
    "PORT_UDP",
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
        """The exporting dissector named TLS (e.g. "http-over-tls", "http_tls"): decrypted bytes."""
        name = (self.protocol or "").lower()
        return any(t in name for t in _TLS_NAMES)


def _text(value: bytes) -> str:
    return value.split(b"\x00", 1)[0].decode("ascii", "replace")


def _u32(value: bytes, tag: int) -> int:
    if len(value) < 4:
        raise MalformedError(f"exported PDU tag {tag} holds {len(value)} bytes, not 4")
    return int(_U32.unpack_from(value)[0])


def parse_exported_pdu(data: bytes | memoryview) -> ExportedPdu:
    """Split one link-type-252 frame into its tags and PDU; `MalformedError` when the tags run past
    the frame or an address tag has the wrong size."""
    buf = bytes(data)
    pos = 0
    end = len(buf)
    protocol: str | None = None
    heuristic: str | None = None
    table: str | None = None
    src = dst = None
    port_type = src_port = dst_port = orig_frame = None
    while True:
        if end - pos < 4:
            raise MalformedError("exported PDU tags run past the end of the frame")
        tag, length = _TAG.unpack_from(buf, pos)
        pos += 4
        if tag == TAG_END_OF_OPT:
            pos += length  # its length is 0 in every writer; honour it if not
            break
        if pos + length > end:
            raise MalformedError(f"exported PDU tag {tag} claims {length} bytes past the end of the frame")
        value = buf[pos : pos + length]
        pos += length
        if tag == TAG_DISSECTOR_NAME:
            protocol = _text(value)
        elif tag == TAG_HEUR_DISSECTOR_NAME:
            heuristic = _text(value)
        elif tag == TAG_DISSECTOR_TABLE_NAME:
            table = _text(value)
        elif tag in (TAG_IPV4_SRC, TAG_IPV4_DST):
            if length < 4:
                raise MalformedError(f"exported PDU IPv4 address tag of {length} bytes")
            addr = str(ipaddress.IPv4Address(value[:4]))
            src, dst = (addr, dst) if tag == TAG_IPV4_SRC else (src, addr)
        elif tag in (TAG_IPV6_SRC, TAG_IPV6_DST):
            if length < 16:
                raise MalformedError(f"exported PDU IPv6 address tag of {length} bytes")
            addr = str(ipaddress.IPv6Address(value[:16]))
            src, dst = (addr, dst) if tag == TAG_IPV6_SRC else (src, addr)
        elif tag == TAG_PORT_TYPE:
            port_type = _u32(value, tag)
        elif tag == TAG_SRC_PORT:
            src_port = _u32(value, tag)
        elif tag == TAG_DST_PORT:
            dst_port = _u32(value, tag)
        elif tag == TAG_ORIG_FRAME_NUMBER:
            orig_frame = _u32(value, tag)
    if pos > end:
        raise MalformedError("exported PDU tags run past the end of the frame")
    return ExportedPdu(
        payload=buf[pos:],
        protocol=protocol or heuristic or table,
        src=src,
        dst=dst,
        port_type=port_type,
        src_port=src_port,
        dst_port=dst_port,
        orig_frame=orig_frame,
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
