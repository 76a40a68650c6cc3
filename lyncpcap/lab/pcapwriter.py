"""Writers for the two capture formats tshark reads: classic pcap and pcapng.

Timestamps are turned into integer (micro|nano)seconds exactly: a float goes through its shortest
decimal form, a `Decimal` or `Fraction` is used as is, so the same packets always give the same file.
"""

from __future__ import annotations

import datetime
import os
import struct
import uuid
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import BinaryIO

Timestamp = float | Decimal | Fraction

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D

# pcapng block types and option codes (draft-ietf-opsawg-pcapng).
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_EPB = 0x00000006
BT_DSB = 0x0000000A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9
SECRETS_TLS_KEYLOG = 0x544C534B

USERAPPL = "lyncpcap lab"


def timestamp_units(ts: Timestamp, per_second: int) -> int:
    """`ts` (seconds since the epoch) as a whole number of 1/`per_second` units, rounded half-even."""
    if isinstance(ts, Fraction):
        return round(ts * per_second)
    exact = ts if isinstance(ts, Decimal) else Decimal(repr(float(ts)))
    return int((exact * per_second).to_integral_value(rounding=ROUND_HALF_EVEN))


def write_pcap(
    path: str | os.PathLike[str],
    packets: Iterable[tuple[Timestamp, bytes]],
    linktype: int,
    *,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> None:
    """Write a classic libpcap file; frames longer than `snaplen` are cut (caplen < origlen)."""
    order = ">" if big_endian else "<"
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    per_second = 1_000_000_000 if nanosecond else 1_000_000
    with open(path, "wb") as out:
        out.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        for ts, frame in packets:
            units = timestamp_units(ts, per_second)
            sec, frac = divmod(units, per_second)
            data = frame[:snaplen]
            out.write(struct.pack(order + "IIII", sec, frac, len(data), len(frame)))
            out.write(data)


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _options(items: list[tuple[int, bytes]]) -> bytes:
    if not items:
        return b""
    return b"".join(_option(code, value) for code, value in items) + struct.pack("<HH", OPT_ENDOFOPT, 0)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def section_header(comment: str | None = None) -> bytes:
    opts: list[tuple[int, bytes]] = []
    if comment:
        opts.append((OPT_COMMENT, comment.encode()))
    opts.append((SHB_USERAPPL, USERAPPL.encode()))
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return _block(BT_SHB, body)


def interface_description(linktype: int, snaplen: int, tsresol_ns: bool) -> bytes:
    opts: list[tuple[int, bytes]] = [(IF_NAME, b"lab0")]
    if tsresol_ns:
        opts.append((IF_TSRESOL, bytes([9])))
    body = struct.pack("<HHI", linktype, 0, snaplen) + _options(opts)
    return _block(BT_IDB, body)


def decryption_secrets(secrets: bytes, secrets_type: int = SECRETS_TLS_KEYLOG) -> bytes:
    body = struct.pack("<II", secrets_type, len(secrets)) + _pad4(secrets)
    return _block(BT_DSB, body)


def enhanced_packet(units: int, frame: bytes, snaplen: int) -> bytes:
    data = frame[:snaplen]
    body = struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(data), len(frame)) + _pad4(data)
    return _block(BT_EPB, body)


def write_pcapng(
    path: str | os.PathLike[str],
    packets: Iterable[tuple[Timestamp, bytes]],
    linktype: int,
    *,
    secrets: bytes | None = None,
    comment: str | None = None,
    tsresol_ns: bool = False,
    snaplen: int = 262144,
) -> None:
    """Write a pcapng file: SHB (shb_userappl "lyncpcap lab"), one IDB, a TLS key-log DSB if
    `secrets` is given (before the first packet, where tshark needs it), then one EPB per frame."""
    per_second = 1_000_000_000 if tsresol_ns else 1_000_000
    with open(path, "wb") as out:
        _write_pcapng_blocks(out, packets, linktype, secrets, comment, per_second, snaplen)


def _write_pcapng_blocks(
    out: BinaryIO,
    packets: Iterable[tuple[Timestamp, bytes]],
    linktype: int,
    secrets: bytes | None,
    comment: str | None,
    per_second: int,
    snaplen: int,
) -> None:
    out.write(section_header(comment))
    out.write(interface_description(linktype, snaplen, per_second == 1_000_000_000))
    if secrets:
        out.write(decryption_secrets(secrets))
    for ts, frame in packets:
        out.write(enhanced_packet(timestamp_units(ts, per_second), frame, snaplen))


# -- Microsoft Network Monitor -----------------------------------------------------------------------

#: Network Monitor's per-frame network types (2.1 and later): NDIS media, then its special frames.
NETMON_ETHERNET = 1
NETMON_RAW_IP = 9
NETMON_PCAP_BASE = 0xE000  # a converted pcap frame: 0xE000 | LINKTYPE_
NETMON_NETEVENT = 0xFFE0  # an Event Tracing for Windows event
NETMON_NETWORK_INFO_EX = 0xFFFB  # the adapters the capture ran on
NETMON_NETWORK_INFO = 0xFFFD
NETMON_DNS_CACHE = 0xFFFE
NETMON_FILTER = 0xFFFF  # the capture or display filter's text

#: 100-nanosecond units between 1601-01-01 (FILETIME's epoch) and 1970-01-01
FILETIME_EPOCH = 116_444_736_000_000_000

NetmonFrame = tuple[Timestamp, bytes] | tuple[Timestamp, bytes, int]


def write_netmon(
    path: str | os.PathLike[str],
    frames: Iterable[NetmonFrame],
    *,
    version: tuple[int, int] = (2, 3),
    network: int = NETMON_ETHERNET,
    snaplen: int = 262144,
    frame_table: bool = True,
    first_offset: int = 128,
) -> None:
    """Write a Network Monitor capture as Network Monitor 3.x does (format 2.3 by default: a
    per-frame trailer with the frame's network type and its UTC time as a FILETIME).

    A frame is (time, bytes) or (time, bytes, network type), for the special frames Network Monitor
    writes among the packets (`NETMON_NETWORK_INFO_EX`, ...).  The header's start time is the first
    frame's, cut to the millisecond, as UTC; frame times are offsets from it (milliseconds in 1.x,
    microseconds in 2.x).  `frame_table=False` leaves the frame index out, as in a capture whose
    writer never closed the file.  `first_offset` puts the first frame further into the file."""
    major, minor = version
    items = [(f[0], f[1], f[2] if len(f) == 3 else network) for f in frames]  # type: ignore[misc]
    start_units = timestamp_units(items[0][0], 1000) if items else 0  # milliseconds
    start_s, start_ms = divmod(start_units, 1000)
    when = datetime.datetime.fromtimestamp(start_s, datetime.UTC)
    body = bytearray(b"\x00" * (first_offset - 128))
    offsets: list[int] = []
    for ts, frame, net in items:
        offsets.append(128 + len(body))
        data = frame[:snaplen]
        if major == 1:
            delta = timestamp_units(ts, 1000) - start_units
            body += struct.pack("<IHH", delta, len(frame), len(data))
        else:
            delta = timestamp_units(ts, 1_000_000) - start_units * 1000
            body += struct.pack("<QII", delta & 0xFFFFFFFFFFFFFFFF, len(frame), len(data))
        body += data
        if major == 2 and minor == 1:
            body += struct.pack("<H", net)
        elif major == 2 and minor == 2:
            body += struct.pack("<HI", net, 0)
        elif major == 2 and minor >= 3:
            body += struct.pack("<HIQB", net, 0, timestamp_units(ts, 10_000_000) + FILETIME_EPOCH, 0)
    table_offset = 128 + len(body)
    table = struct.pack(f"<{len(offsets)}I", *offsets)
    header = struct.pack(
        "<4sBBH8H10I",
        b"RTSS" if major == 1 else b"GMBU",
        minor,
        major,
        network if major == 1 or minor == 0 else NETMON_ETHERNET,
        when.year, when.month, (when.weekday() + 1) % 7, when.day, when.hour, when.minute, when.second, start_ms,
        table_offset if frame_table else 0,
        len(table) if frame_table else 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    with open(path, "wb") as out:
        out.write(header.ljust(128, b"\x00"))
        out.write(body)
        if frame_table:
            out.write(table)


#: Microsoft-Windows-NDIS-PacketCapture, the provider `netsh trace start capture=yes` records with
NDIS_PACKET_CAPTURE = "2ED6006E-4729-4609-B423-3EE7BCD678EF"
NDIS_KW_MEDIA_802_3 = 0x1
NDIS_KW_PACKET_START = 0x4000_0000
NDIS_KW_PACKET_END = 0x8000_0000
NDIS_KW_RECEIVE = 0x2_0000_0000


def etw_event(
    ts: Timestamp,
    user_data: bytes,
    *,
    provider: str = NDIS_PACKET_CAPTURE,
    event_id: int = 1001,
    keyword: int = 0,
    extended: tuple[bytes, ...] = (),
) -> bytes:
    """An ETW event as Network Monitor stores it in a NETEVENT (0xFFE0) record: the event header
    (64-bit provider), extended data items, then the user data."""
    head = struct.pack("<HHHHII", 0, 0, 0x0040, 0, 4242, 4)  # size, header type, flags, property, thread, process
    head += struct.pack("<Q", timestamp_units(ts, 10_000_000) + FILETIME_EPOCH)
    head += uuid.UUID(provider).bytes_le
    head += struct.pack("<HBBBBHQ", event_id, 0, 0x10, 4, 0, 0, keyword)  # id, version, channel, level, opcode, task
    head += struct.pack("<Q", 0) + bytes(16) + struct.pack("<BBH", 0, 0, 1)  # processor time, activity, buffer context
    head += struct.pack("<HHB", len(extended), len(user_data), 0)
    items = b"".join(struct.pack("<HHHH", 0, 1, 0, len(x)) + x for x in extended)
    return head + items + user_data


def ndis_fragment(
    ts: Timestamp,
    fragment: bytes,
    *,
    start: bool = True,
    end: bool = True,
    lower: int = 0,
    miniport: int = 7,
    extended: tuple[bytes, ...] = (),
) -> bytes:
    """An NDIS packet-capture event (1001) carrying `fragment` of an Ethernet frame."""
    keyword = NDIS_KW_MEDIA_802_3 | NDIS_KW_RECEIVE
    keyword |= (NDIS_KW_PACKET_START if start else 0) | (NDIS_KW_PACKET_END if end else 0)
    user = struct.pack("<III", miniport, lower, len(fragment)) + fragment
    return etw_event(ts, user, keyword=keyword, extended=extended)
