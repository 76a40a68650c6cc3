"""Writers for the two capture formats tshark reads: classic pcap and pcapng.

Timestamps are turned into integer (micro|nano)seconds exactly: a float goes through its shortest
decimal form, a `Decimal` or `Fraction` is used as is, so the same packets always give the same file.
"""

from __future__ import annotations

import os
import struct
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
