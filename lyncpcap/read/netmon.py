"""Microsoft Network Monitor captures (`.cap`, formats 1.x and 2.0–2.3), read as pcap link types.

Network Monitor 3.4 and Message Analyzer were what Lync support asked for, so a Lync sign-in is as
likely to arrive in this format as in pcapng.  The layout, as Network Monitor 3.x's help documents
it (and Wireshark's wiretap reads it):

* a 128-byte file header: magic `RTSS` (1.x) or `GMBU` (2.x), minor and major version, the media
  type, the capture's start as a SYSTEMTIME, and where the frame table is;
* frame records: a header (1.x: milliseconds since the start, original and captured length, 16-bit;
  2.x: microseconds since the start, 64-bit, and 32-bit lengths), the bytes, then from 2.1 on a
  trailer: the frame's media type (2.1), an index into the process table (2.2) and the frame's UTC
  time as a FILETIME with a time-zone index (2.3, what Network Monitor 3.x writes);
* a frame table at the end: one 32-bit file offset per frame.  Frames are read in its order, as
  Wireshark does; a file whose writer never closed it has no table, and is then read record after
  record from byte 128, with a warning.

Media types become pcap link types (Ethernet, raw IP, or a converted pcap's own type), so the rest
of the pipeline sees one kind of record.  Frame numbers are Wireshark 4's: the filter, adapter list
and ETW event records Network Monitor writes among the packets are numbered frames (not handed on);
its network-info, DNS-cache and payload-header records are not frames.

Times: a 2.3 frame carries its UTC time.  Earlier formats give an offset from the header's start
time, a SYSTEMTIME without a time zone; it is read as UTC (Wireshark reads it in the local zone of
the machine it runs on, so its times can differ by that zone's offset).
"""

from __future__ import annotations

import calendar
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["MAGICS", "NetmonHeader", "parse_header", "read_records"]

MAGIC_1 = b"RTSS"
MAGIC_2 = b"GMBU"
MAGICS = (MAGIC_1, MAGIC_2)
#: magic, minor, major, media type, SYSTEMTIME (8 x 16 bits), then ten 32-bit offsets and lengths
HEADER = struct.Struct("<4sBBH8H10I")
HEADER_SIZE = 128
#: 100-nanosecond units between 1601-01-01 (FILETIME's epoch) and 1970-01-01
FILETIME_EPOCH = 116_444_736_000_000_000
#: Records larger than wiretap's maximum mean damage.
MAX_PACKET = 262144
#: Bytes read from the file at a time (records and the frame table).
WINDOW = 1 << 20

_LINK_ETHERNET = 1
_LINK_RAW = 101

#: NDIS media types (the header's, and 2.1+ trailers') that carry packets lyncpcap reads.
_MEDIA = {
    0: _LINK_ETHERNET,  # some Network Monitor 3.4 VPN captures say 0 for Ethernet frames
    1: _LINK_ETHERNET,
    7: _LINK_RAW,  # tunnelling interfaces
    8: _LINK_RAW,  # wireless WAN
    9: _LINK_RAW,  # raw IP frames
}
#: (stands for) packets the NDIS packet capture took on a native 802.11 interface
NATIVE_802_11 = -1
_MEDIA_NAMES = {
    2: "Token Ring",
    3: "FDDI",
    4: "NDIS WAN / ATM",
    5: "IP over IEEE 1394",
    6: "802.11 with Network Monitor's radio header",
    0xE080: "802.11 (Message Analyzer)",
    0xE081: "Message Analyzer NDIS ETW Wi-Fi channel",
    0xE082: "Fiddler (Message Analyzer)",
    0xE083: "Message Analyzer WFP capture",
    0xE084: "Message Analyzer WFP capture",
    0xE085: "Message Analyzer WFP capture",
    0xE086: "Message Analyzer WFP capture",
    0xE087: "Message Analyzer WFP capture",
    0xE088: "Message Analyzer WFP capture",
    0xE089: "Message Analyzer PEF NDIS",
    0xE08A: "Message Analyzer PEF NDIS Wi-Fi",
    NATIVE_802_11: "native 802.11 from Windows' NDIS packet capture",
}
_PCAP_BASE = 0xE000
#: Records that are numbered frames but hold no packet: the adapter list, the filter (and ETW
#: events other than the NDIS packet capture's).
NETEVENT = 0xFFE0
_NOTE_FRAMES = frozenset({NETEVENT, 0xFFFB, 0xFFFF})
#: Records that are not frames at all: payload header, network info, DNS cache.
_NOT_FRAMES = frozenset({0xFFFC, 0xFFFD, 0xFFFE})


@dataclass(frozen=True, slots=True)
class NetmonHeader:
    major: int
    minor: int
    media: int
    start_ms: int | None  # the header's start time (milliseconds since the epoch, read as UTC)
    table_offset: int
    table_length: int

    @property
    def trailer(self) -> int:
        """Bytes after each frame's data."""
        if self.major != 2 or self.minor == 0:
            return 0
        return {1: 2, 2: 6}.get(self.minor, 15)

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_header(head: bytes) -> NetmonHeader:
    """The file header at the start of `head`; ValueError with the reason if it cannot be read."""
    if len(head) < HEADER.size:
        raise ValueError(f"truncated Network Monitor file header ({len(head)} of {HEADER_SIZE} bytes)")
    (
        magic,
        minor,
        major,
        media,
        year,
        month,
        _dow,
        day,
        hour,
        minute,
        second,
        msec,
        table_offset,
        table_length,
        *_,
    ) = HEADER.unpack_from(head)
    if (magic, major) not in ((MAGIC_1, 1), (MAGIC_2, 2)):
        raise ValueError(f"unsupported Network Monitor format version {major}.{minor}")
    start: int | None = None
    if 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61 and msec < 1000:
        start = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * 1000 + msec
    return NetmonHeader(major, minor, media, start, table_offset, table_length)


Record = tuple[int, float, int, bytes, int]


class _Window:
    """Reads file bytes at any offset through a 1 MiB buffer (`os.pread`, no seeking)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.base = 0
        self.data = b""

    def get(self, offset: int, n: int) -> bytes:
        """`n` bytes from `offset`, fewer at the end of the file."""
        start = offset - self.base
        if start >= 0 and start + n <= len(self.data):
            return self.data[start : start + n]
        self.data = os.pread(self.fd, max(WINDOW, n), offset)
        self.base = offset
        return self.data[:n]


def _offsets(window: _Window, header: NetmonHeader) -> Iterator[int]:
    """The frame table's offsets, read a window at a time."""
    count = header.table_length // 4
    per_read = WINDOW // 4
    table = _Window(window.fd, window.size)
    for first in range(0, count, per_read):
        n = min(per_read, count - first)
        raw = table.get(header.table_offset + 4 * first, 4 * n)
        yield from struct.unpack(f"<{len(raw) // 4}I", raw[: len(raw) // 4 * 4])


# -- packets inside ETW events -------------------------------------------------------------------
#
# `netsh trace start capture=yes` (and Message Analyzer's local capture) records packets as events of
# the Microsoft-Windows-NDIS-PacketCapture provider; Network Monitor saves them as event records
# (media type 0xFFE0), which Wireshark shows as "NetMon Event" / "ETW Ndis".  The record is the
# event header (EVENT_HEADER, then the extended-data count and user-data length, as Wireshark's
# netmon_event dissector reads it), extended data items, then the user data: for event 1001
# (a packet fragment) the miniport and lower interface indexes, the fragment's size and its bytes.
# The keyword says the medium and whether the fragment starts and/or ends its packet.

NDIS_PACKET_CAPTURE = bytes.fromhex("6e00d62e29470946b4233ee7bcd678ef")  # {2ED6006E-4729-4609-B423-3EE7BCD678EF}
EVENT_PACKET_FRAGMENT = 1001
_EVENT_HEADER = struct.Struct("<HHHHIIQ16sHBBBBHQQ16sBBHHHB")  # 89 bytes
KW_MEDIA_802_3 = 0x1
KW_MEDIA_WIRELESS_WAN = 0x200
KW_MEDIA_TUNNEL = 0x8000
KW_MEDIA_NATIVE_802_11 = 0x10000
KW_PACKET_START = 0x4000_0000
KW_PACKET_END = 0x8000_0000
#: fragments of one packet kept at most (a packet is at most 64 KiB; more means damage)
MAX_PACKET_BYTES = 1 << 16


class NdisPackets:
    """Packets out of NDIS packet-capture events, fragments joined per interface pair."""

    def __init__(self) -> None:
        self.partial: dict[tuple[int, int], bytearray] = {}

    def packet(self, event: bytes) -> tuple[int | None, bytes] | None:
        """(pcap link type, or None for native 802.11; the packet) when `event` completes one."""
        if len(event) < _EVENT_HEADER.size:
            return None
        fields = _EVENT_HEADER.unpack_from(event)
        provider, event_id, keyword = fields[7], fields[8], fields[14]
        extended_count, user_length = fields[20], fields[21]
        if provider != NDIS_PACKET_CAPTURE or event_id != EVENT_PACKET_FRAGMENT:
            return None
        pos = _EVENT_HEADER.size
        for _ in range(extended_count):  # reserved, type, linkage, size, data
            if pos + 8 > len(event):
                return None
            pos += 8 + int.from_bytes(event[pos + 6 : pos + 8], "little")
        user = event[pos : pos + user_length]
        if len(user) < 12:
            return None
        miniport, lower, size = struct.unpack_from("<III", user)
        fragment = user[12 : 12 + size]
        key = (miniport, lower)
        if keyword & KW_PACKET_START:
            self.partial.pop(key, None)
            if keyword & KW_PACKET_END:
                return _medium(keyword), fragment
            self.partial[key] = bytearray(fragment)
            return None
        pending = self.partial.get(key)
        if pending is None:
            return None  # a fragment whose start was not captured
        pending += fragment
        if len(pending) > MAX_PACKET_BYTES:
            del self.partial[key]
            return None
        if keyword & KW_PACKET_END:
            del self.partial[key]
            return _medium(keyword), bytes(pending)
        return None


def _medium(keyword: int) -> int | None:
    if keyword & KW_MEDIA_NATIVE_802_11:
        return None
    if keyword & (KW_MEDIA_WIRELESS_WAN | KW_MEDIA_TUNNEL):
        return _LINK_RAW
    return _LINK_ETHERNET


def read_records(
    fd: int, size: int, header: NetmonHeader, warn: Callable[[str], None], at: Callable[[int, int], None]
) -> Iterator[Record]:
    """Yields (frame number, time, pcap link type, bytes, original length) per packet.  `at(frame,
    offset)` is told each frame's number and file offset as frames go by (packets or not), `warn`
    what was wrong."""
    window = _Window(fd, size)
    table_ok = (
        header.table_length > 0
        and header.table_length % 4 == 0
        and header.table_offset >= HEADER_SIZE
        and header.table_offset + header.table_length <= size
    )
    if not table_ok:
        warn(
            "the Network Monitor frame table is missing or damaged (was the capture stopped before "
            "it was saved?); frames were read in file order"
        )
    major = header.major
    trailer = header.trailer
    record_header = 8 if major == 1 else 16
    start_ms = header.start_ms
    if start_ms is None and not (major == 2 and header.minor >= 3):
        warn("the Network Monitor file header has no valid start time; times are offsets from 1970-01-01")
    start_ms = start_ms or 0
    start_units = start_ms * 10_000  # in 100 ns
    unpack_1 = struct.Struct("<IHH").unpack_from
    unpack_2 = struct.Struct("<QII").unpack_from
    unpack_trailer = struct.Struct("<H4xQ").unpack_from if trailer == 15 else struct.Struct("<H").unpack_from
    frame = 0
    skipped: Counter[int] = Counter()
    ndis = NdisPackets()
    offsets = _offsets(window, header) if table_ok else None
    offset = HEADER_SIZE
    # without a usable table, records run up to where the header says the table starts (if it can)
    end_of_records = header.table_offset if HEADER_SIZE < header.table_offset < size else size
    try:
        while True:
            if offsets is not None:
                offset = next(offsets, -1)
                if offset < 0:
                    break
                if offset > size - record_header:
                    warn(
                        f"the Network Monitor frame table points outside the file at frame {frame + 1}; stopped reading"
                    )
                    break
            elif offset >= end_of_records:
                break
            head = window.get(offset, record_header)
            if len(head) < record_header:
                warn(f"truncated record at end of file (frame {frame + 1})")
                break
            if offsets is None and not any(head):
                break  # zeros where the next record would be: the end of what was written
            if major == 1:
                delta_ms, wirelen, caplen = unpack_1(head)
                ts = (start_ms + delta_ms) / 1000
            else:
                delta_us, wirelen, caplen = unpack_2(head)
                units = (delta_us * 10) & 0xFFFF_FFFF_FFFF_FFFF  # signed 100 ns units, as Microsoft documents
                if units >= 1 << 63:
                    units -= 1 << 64
                ts = (start_units + units) / 10_000_000
            if caplen > MAX_PACKET:
                warn(f"damaged record at frame {frame + 1} (captured length {caplen}); stopped reading")
                break
            whole = record_header + caplen + trailer
            if offset + whole > size:
                warn(f"truncated record at end of file (frame {frame + 1})")
                break
            body = window.get(offset, whole)
            data = body[record_header : record_header + caplen]
            if offsets is None:
                offset += whole
            media = header.media
            if trailer:
                fields = unpack_trailer(body, record_header + caplen)
                media = fields[0]
                if trailer == 15:
                    ts = (fields[1] - FILETIME_EPOCH) / 10_000_000
                if media in _NOT_FRAMES:
                    continue
            frame += 1
            at(frame, offset)
            linktype = _MEDIA.get(media)
            if linktype is None:
                if media == NETEVENT:
                    packet = ndis.packet(data)
                    if packet is None:
                        continue  # another event, or a fragment of a packet still incomplete
                    medium, data = packet
                    if medium is None:
                        skipped[NATIVE_802_11] += 1
                        continue
                    yield frame, ts, medium, data, len(data)
                    continue
                if media in _NOTE_FRAMES:
                    continue
                if media & 0xF000 == _PCAP_BASE and media not in _MEDIA_NAMES:
                    linktype = media & 0x0FFF
                else:
                    skipped[media] += 1
                    continue
            yield frame, ts, linktype, data, wirelen
    finally:
        for media, n in sorted(skipped.items()):
            name = _MEDIA_NAMES.get(media, "unknown")
            what = f"media type {media} ({name})" if media >= 0 else name
            frames = "frame" if n == 1 else "frames"
            warn(f"{n} Network Monitor {frames} of {what} skipped: lyncpcap reads Ethernet and IP")
