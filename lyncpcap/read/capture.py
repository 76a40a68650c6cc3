"""Stream packets out of pcap and pcapng files, plain or gzip-compressed.

`open_capture` sniffs the container from the first bytes (never the file name) and returns a
`Capture` that yields one tuple per frame.  Plain files are read through a sliding 8 MiB memory
map, gzip files are inflated 1 MiB at a time, so memory does not grow with the file.  Damage at
the end of a file becomes a warning, not an error.

`Capture.scan` is the fast way through a file: it calls back per frame instead of yielding, and a
`Prefilter` lets it count and drop, from one look at the record and packet headers, the frames the
flows layer would drop anyway (media on uninteresting UDP ports, TCP segments of ignored
connections), without building anything for them.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

from lyncpcap.errors import CaptureError
from lyncpcap.read import netmon

try:  # the hot loops over enhanced packet blocks and pcap records, compiled (setup.py); optional
    from lyncpcap.read._scan import epb_run as _epb_run
    from lyncpcap.read._scan import pcap_run as _pcap_run
except ImportError:  # pragma: no cover - a machine without a C compiler
    _epb_run = _pcap_run = None

__all__ = ["Capture", "Feed", "Prefilter", "Record", "open_capture"]

#: (frame number, timestamp in seconds since the epoch, link type, captured bytes, original length)
Record = tuple[int, float, int, bytes, int]
#: Receives what `Capture.scan` hands over: the fields of a Record, as arguments.
Feed = Callable[[int, float, int, bytes, int], None]
_Buffer = bytes | mmap.mmap
#: A record reader: yields records (or None once, at a pause, where it accepts (feed, prefilter)).
_Reader = Generator["Record | None", "tuple[Feed, Prefilter | None] | None", None]

CHUNK = 1 << 20
#: Plain files are read through a sliding memory map of this size (no copying into buffers).
WINDOW = 8 << 20
#: wiretap's WTAP_MAX_PACKET_SIZE_STANDARD: larger records mean a damaged file.
MAX_PACKET = 262144
#: A pcapng block holding a maximal packet plus generous options; larger means damage.
MAX_BLOCK = MAX_PACKET + (1 << 20)

_PCAP_MAGICS = {
    # first four bytes on disk: (byte order, fraction divisor)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"
_GZIP = b"\x1f\x8b"
# Containers we recognise but do not read, so the error can say what the file is.
_OTHER_FORMATS = (
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file: decompress it first (zstd -d)"),
    (b"\x04\x22\x4d\x18", "an lz4-compressed file: decompress it first (lz4 -d)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file: decompress it first (xz -d)"),
    (b"BZh", "a bzip2-compressed file: decompress it first (bunzip2)"),
    (b"PK\x03\x04", "a zip archive: extract the capture first"),
    (
        b"\x34\xcd\xb2\xa1",
        "a modified (Kuznetsov) pcap, which is not supported: convert it with editcap -F pcap",
    ),
    (
        b"\xa1\xb2\xcd\x34",
        "a modified (Kuznetsov) pcap, which is not supported: convert it with editcap -F pcap",
    ),
)

# What Windows tools write that no capture reader opens, known by the name once the content is
# not a capture: how to turn them into one.
_NAME_HINTS = {
    ".etl": (
        "a Windows event trace (netsh trace, pktmon): convert it to pcapng first, with "
        "'pktmon etl2pcap FILE.etl' (Windows 10 and later) or etl2pcapng"
    ),
    ".matp": "a Message Analyzer session: save it from Message Analyzer as a Network Monitor .cap first",
    ".matu": "a Message Analyzer session: save it from Message Analyzer as a Network Monitor .cap first",
}

# pcapng block types
_BT_PB = 0x00000002  # obsolete Packet Block
_BT_IDB = 0x00000001
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
_BT_JOURNAL = 0x00000009  # systemd journal export: tshark numbers it as a frame
_BT_DSB = 0x0000000A
_BT_SHB = 0x0A0D0D0A
# Custom blocks are frames to tshark as well (they show as "data").
_FRAME_ONLY_BLOCKS = frozenset({_BT_JOURNAL, 0x00000BAD, 0x40000BAD})

_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


class _Gunzip:
    """Stream-decompresses a gzip file (several members allowed), keeping every byte decoded
    before damage; `error` then says what went wrong and reading stops."""

    RAW_CHUNK = 1 << 18

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: str | None = None
        self._inflate: zlib._Decompress | None = None
        self._input = b""
        self._input_done = False

    def read(self, n: int) -> bytes:
        parts = []
        have = 0
        while have < n and self.error is None:
            if not self._input:
                if self._input_done:
                    break
                self._input = self.raw.read(self.RAW_CHUNK)
                if not self._input:
                    self._input_done = True
                    if self._inflate is not None:
                        self.error = "the gzip data ends early (the file was cut short)"
                    break
            if self._inflate is None:
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                chunk = self._inflate.decompress(self._input, n - have)
            except zlib.error as exc:
                self.error = f"corrupt gzip data ({exc})"
                break
            self._input = self._inflate.unconsumed_tail
            if chunk:
                parts.append(chunk)
                have += len(chunk)
            if self._inflate.eof:  # end of a member: what follows is the next one
                self._input = self._inflate.unused_data + self._input
                self._inflate = None
        return b"".join(parts)

    def close(self) -> None:
        self.raw.close()


def _swap16(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


# Fields of the packet bytes that the prefilter looks at, right after the record header:
# Ethernet type, IPv4 version/IHL, total length, flags/fragment offset, protocol, the two ports,
# and the TCP flags (Ethernet, IPv4 without options).
_PACKET_FIELDS = "12xHBxH2xHxB10xHH9xB"
_PACKET_FIELDS_LEN = 48
_ETH_IPV4 = 0x0800
_IP_FRAGMENT = 0x3FFF  # more-fragments flag and fragment offset
_TCP_FIN_SYN_RST = 0x07
_LINK_ETHERNET = 1
#: Shortest frame the prefilter judges (Ethernet + IPv4 + a TCP header), as the flows layer does.
_MIN_JUDGED = 54


class Prefilter:
    """Frames `Capture.scan` may count and drop instead of handing them over.

    Only untagged Ethernet frames holding a whole IPv4 packet without options are judged:
      * UDP when neither port is in `udp_ports` (None: no UDP is dropped);
      * TCP without SYN, FIN or RST whose 12-byte key (source address, destination address,
        source port, destination port, as on the wire) maps in `tcp_entries` to an int at least
        `tcp_floor` — the flows layer's mark of a connection it ignores.
    What is dropped is counted in `udp`, `tcp` and `bytes` (original lengths).  Every `every`
    packets (a power of two; dropped ones count), `tick(ts)` is called with that packet's time
    before it is judged, and `tcp_floor` is read again after it.
    """

    __slots__ = ("bytes", "every", "frame", "tcp", "tcp_entries", "tcp_floor", "tick", "udp", "udp_ports")

    def __init__(
        self,
        udp_ports: frozenset[int] | None,
        tcp_entries: dict[bytes, object],
        tcp_floor: int,
        tick: Callable[[float], None],
        every: int,
    ) -> None:
        if every < 1 or every & (every - 1):
            raise ValueError("every must be a power of two")
        self.udp_ports = udp_ports
        self.tcp_entries = tcp_entries
        self.tcp_floor = tcp_floor
        self.tick = tick
        self.every = every
        self.udp = 0
        self.tcp = 0
        self.bytes = 0
        self.frame = 0  # the frame about to be judged when `tick` is called

    def wire_ports(self, order: str) -> frozenset[int] | None:
        """`udp_ports` as a struct of byte order `order` reads them from network-order bytes."""
        if self.udp_ports is None or order == ">":
            return self.udp_ports
        return frozenset(_swap16(p) for p in self.udp_ports)


def _prefilter_state(
    pre: Prefilter | None,
) -> tuple[int, dict[bytes, object], int, dict[str, tuple[int, int, frozenset[int] | None]]]:
    """A reader's locals for `pre`: packet mask, TCP entries, floor, and per byte order the values
    that Ethernet type IPv4, the fragment mask and the UDP ports have when read in that order."""
    wire = {
        order: (
            _ETH_IPV4 if order == ">" else _swap16(_ETH_IPV4),
            _IP_FRAGMENT if order == ">" else _swap16(_IP_FRAGMENT),
            pre.wire_ports(order) if pre is not None else None,
        )
        for order in "<>"
    }
    if pre is None:
        return 0, {}, 0, wire
    return pre.every - 1, pre.tcp_entries, pre.tcp_floor, wire


class Capture:
    """One capture file, read once, front to back.

    Attributes are filled as the file is read: `linktypes` (pcapng interfaces may appear late),
    `secrets`, `warnings`, `position` (on-disk bytes read so far, at chunk granularity) and
    `frames` (the last frame number, after iteration).
    """

    path: Path
    format: str
    compressed: bool
    size_bytes: int
    position: int
    linktypes: set[int]
    secrets: list[tuple[int, bytes]]
    warnings: list[str]
    frames: int

    def __init__(
        self, path: Path, fmt: str, size: int, raw: BinaryIO, source: BinaryIO | _Gunzip, head: bytes
    ) -> None:
        self.path = path
        self.format = fmt
        self.compressed = isinstance(source, _Gunzip)
        self.size_bytes = size
        self.position = 0
        self.linktypes = set()
        self.secrets = []
        self.warnings = []
        self.frames = 0
        self._raw = raw  # the file on disk (its offset is the position)
        self._source = source  # what yields capture bytes (the raw file, or a gzip reader on it)
        self._head = head  # bytes already read from source during sniffing
        self._iterated = False
        self._paused: _Reader | None = None  # a reader stopped in front of the first frame
        self._damage_reported = False
        self._mapped = not self.compressed  # plain files: map WINDOW bytes at a time
        self._base = 0  # file offset of the buffer being read (mapped mode)
        self._update_position()
        if fmt == "pcap":
            self._parse_pcap_header()
        elif fmt == "netmon":
            try:
                self._netmon = netmon.parse_header(head)
            except ValueError as exc:
                raise CaptureError(path, str(exc)) from None

    # -- context manager and lifetime --------------------------------------------------------

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def __repr__(self) -> str:
        kind = f"{self.format}.gz" if self.compressed else self.format
        return f"<Capture {str(self.path)!r} {kind} {self.size_bytes} bytes>"

    # -- reading -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        if self._paused is not None:  # read_head() stopped in front of the first frame
            records, self._paused = self._paused, None
            return cast(Iterator[Record], records)  # past the pause, only records are yielded
        self._start_reading()
        return cast(Iterator[Record], self._records())  # without a pause, only records are yielded

    def scan(self, feed: Feed, prefilter: Prefilter | None = None) -> None:
        """Read the whole file, calling `feed(frame, ts, linktype, data, wirelen)` for each frame that
        iteration would yield, except those `prefilter` drops.  Frame numbers, warnings and the
        handling of damage are those of iteration; exceptions from `feed` propagate."""
        if self._paused is not None:
            paused, self._paused = self._paused, None
            try:
                paused.send((feed, prefilter))  # the reader goes on in callback mode, to the end
            except StopIteration:
                return
            raise RuntimeError("the capture reader yielded a record in callback mode")
        self._start_reading()
        for _ in self._records(feed, prefilter):  # with a feed, the reader yields nothing
            pass

    def read_head(self) -> None:
        """Read what comes before the first frame — pcapng section, interface and decryption secrets
        blocks — so that `linktypes` and `secrets` are known; iteration or `scan` then starts with
        the first frame."""
        if self.format != "pcapng":
            return  # the file header, read on opening, is the whole head
        self._start_reading()
        records = self._pcapng_records(pause=True)
        next(records, None)  # stops in front of the first frame, or at the end of a file without any
        self._paused = records

    def _records(self, feed: Feed | None = None, pre: Prefilter | None = None) -> _Reader:
        if self.format == "pcap":
            return self._pcap_records(feed, pre)
        if self.format == "netmon":
            return self._netmon_records(feed)
        return self._pcapng_records(feed, pre)

    def _start_reading(self) -> None:
        if self._iterated:
            raise RuntimeError(f"{self.path}: a Capture can be iterated only once")
        self._iterated = True

    def _update_position(self) -> None:
        try:
            self.position = self._raw.tell()
        except (OSError, ValueError):
            pass

    def _more(self, buf: _Buffer, off: int, need: int) -> tuple[_Buffer, int]:
        """A buffer holding the unread bytes from `buf[off:]` on, at least `need` of them if the
        file has them, and the offset where they start in it."""
        if self._mapped:
            filepos = self._base + off
            base = filepos - filepos % mmap.ALLOCATIONGRANULARITY
            length = min(max(WINDOW, filepos - base + need), self.size_bytes - base)
            if length <= 0:
                return b"", 0
            try:
                window = mmap.mmap(self._raw.fileno(), length, access=mmap.ACCESS_READ, offset=base)
            except (OSError, ValueError):  # not mappable (a pipe, an odd file system): read instead
                self._mapped = False
                self._raw.seek(filepos)
                buf, off = b"", 0
            else:
                self._base = base
                self.position = base + length
                return window, filepos - base
        rest = buf[off:]
        parts = [rest]
        have = len(rest)
        want = max(CHUNK, need - have)
        while have < need or len(parts) == 1:
            data = self._source.read(want)
            if not data:
                break
            parts.append(data)
            have += len(data)
            want = need - have
        error = getattr(self._source, "error", None)
        if error and not self._damage_reported:
            self._damage_reported = True
            self.warnings.append(f"compressed data is damaged or cut short: {error}")
        self._update_position()
        return b"".join(parts), 0

    def _finish(self, frame: int) -> None:
        self.frames = frame
        if self._mapped:
            self.position = self.size_bytes
        else:
            self._update_position()
        self.close()

    # -- pcap ----------------------------------------------------------------------------------

    def _parse_pcap_header(self) -> None:
        head = self._head
        order, divisor = _PCAP_MAGICS[head[:4]]
        if len(head) < 24:
            raise CaptureError(self.path, f"truncated pcap file header ({len(head)} of 24 bytes)")
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII", head, 4)
        self._order = order
        self._divisor = divisor
        self._snaplen = snaplen
        # The upper bits of the link-type field carry FCS information, not the link type.
        self._linktype = network & 0xFFFF
        self.linktypes.add(self._linktype)

    def _pcap_records(self, feed: Feed | None = None, pre: Prefilter | None = None) -> _Reader:
        """Yields records (or, with `feed`, hands them over and yields nothing)."""
        order = self._order
        unpack = struct.Struct(order + "IIII").unpack_from
        # the record header and the packet fields the prefilter reads, in one unpack
        hot = struct.Struct(order + "4I" + _PACKET_FIELDS).unpack_from
        hot_len = 16 + _PACKET_FIELDS_LEN
        divisor = self._divisor
        linktype = self._linktype
        snaplen = self._snaplen
        over_snaplen = 0
        buf: _Buffer = self._head
        off = 24
        end = len(buf)
        frame = 0
        # prefilter state (network-order fields are read in the file's byte order)
        judge = pre is not None and linktype == _LINK_ETHERNET
        mask, table, floor, wire = _prefilter_state(pre)
        eth, fragment, udp_ports = wire[order]
        n_udp = n_tcp = n_bytes = 0
        try:
            while True:
                if feed is not None and end - off >= hot_len and _pcap_run is not None:
                    # runs of whole records in C; what it stops in front of is handled below
                    off, frame, n_udp, n_tcp, n_bytes, over_snaplen = _pcap_run(
                        buf, off, end, order == ">", divisor, linktype, snaplen, frame, pre is not None, mask, table, floor,
                        pre.udp_ports if pre is not None else None, feed, n_udp, n_tcp, n_bytes, over_snaplen,
                    )  # fmt: skip
                whole = False  # the record and the fields of the prefilter are in the buffer
                if end - off >= hot_len:
                    sec, frac, caplen, wirelen, etype, vihl, _total, frag, proto, sport, dport, flags = hot(buf, off)
                    stop = off + 16 + caplen
                    whole = caplen <= MAX_PACKET and stop <= end
                if not whole:  # short records, the end of the buffer, damage
                    if end - off < 16:
                        buf, off = self._more(buf, off, 16)
                        end = len(buf)
                        if end - off < 16:
                            if end > off:
                                self.warnings.append(f"truncated record at end of file (frame {frame + 1})")
                            break
                    sec, frac, caplen, wirelen = unpack(buf, off)
                    stop = off + 16 + caplen
                    if caplen > MAX_PACKET:
                        self.warnings.append(
                            f"record of frame {frame + 1} claims {caplen} captured bytes (more than "
                            f"{MAX_PACKET}): the file is damaged there; stopped reading"
                        )
                        break
                    if stop > end:
                        buf, off = self._more(buf, off, 16 + caplen)
                        end = len(buf)
                        stop = off + 16 + caplen
                        if stop > end:
                            self.warnings.append(f"truncated record at end of file (frame {frame + 1})")
                            break
                if caplen > snaplen:
                    over_snaplen += 1
                frame += 1
                if pre is not None:
                    if not frame & mask:
                        pre.udp, pre.tcp, pre.bytes, pre.frame = n_udp, n_tcp, n_bytes, frame
                        pre.tick(sec + frac / divisor)
                        floor = pre.tcp_floor
                    if whole and judge and caplen >= _MIN_JUDGED and etype == eth and vihl == 0x45 and not frag & fragment:
                        if proto == 17:
                            if udp_ports is not None and sport not in udp_ports and dport not in udp_ports:
                                n_udp += 1
                                n_bytes += wirelen
                                off = stop
                                continue
                        elif proto == 6 and not flags & _TCP_FIN_SYN_RST:
                            entry = table.get(buf[off + 42 : off + 54])
                            if entry.__class__ is int and entry >= floor:  # type: ignore[operator]
                                n_tcp += 1
                                n_bytes += wirelen
                                off = stop
                                continue
                data = buf[off + 16 : stop]
                off = stop
                if feed is None:
                    yield frame, sec + frac / divisor, linktype, data, wirelen
                else:
                    feed(frame, sec + frac / divisor, linktype, data, wirelen)
        finally:
            if pre is not None:
                pre.udp, pre.tcp, pre.bytes = n_udp, n_tcp, n_bytes
            if over_snaplen and snaplen:
                self.warnings.append(
                    f"{over_snaplen} records are longer than the file's snapshot length ({snaplen} bytes)"
                )
            self._finish(frame)

    # -- Network Monitor -----------------------------------------------------------------------

    def _netmon_records(self, feed: Feed | None = None) -> _Reader:
        """Yields records (or, with `feed`, hands them over and yields nothing); no prefilter: the
        flows layer drops what it ignores."""
        frame = 0

        def at(number: int, offset: int) -> None:
            nonlocal frame
            frame = number
            self.position = offset

        linktypes = self.linktypes
        try:
            for record in netmon.read_records(self._raw.fileno(), self.size_bytes, self._netmon, self.warnings.append, at):
                linktypes.add(record[2])
                if feed is None:
                    yield record
                else:
                    feed(*record)
        finally:
            self._finish(frame)

    # -- pcapng --------------------------------------------------------------------------------

    def _pcapng_records(
        self, feed: Feed | None = None, pre: Prefilter | None = None, pause: bool = False
    ) -> _Reader:
        """Yields records (or, with `feed`, hands them over and yields nothing).  With `pause`, first
        yields None in front of the first frame; (feed, prefilter) sent in there says to hand over
        the rest instead."""
        structs: dict[str, dict[str, Callable[..., tuple[int, ...]]]] = {
            order: {
                name: struct.Struct(order + fmt).unpack_from
                for name, fmt in (
                    ("II", "II"),
                    ("I", "I"),
                    ("epb", "IIIII"),
                    ("pb", "HHIIII"),
                    ("idb", "HHI"),
                    ("opt", "HH"),
                    ("q", "q"),
                    ("shb", "HH"),
                    # an enhanced packet block's header and the packet fields the prefilter reads
                    ("hot", "7I" + _PACKET_FIELDS),
                )
            }
            for order in "<>"
        }
        order = "<"
        s = structs[order]
        block_head = s["II"]
        u32 = s["I"]
        epb = s["epb"]
        hot = s["hot"]
        mask, table, floor, wire = _prefilter_state(pre)
        eth, fragment, udp_ports = wire[order]
        hot_len = 28 + _PACKET_FIELDS_LEN
        # per interface: (link type, timestamp divisor, timestamp offset, snaplen)
        interfaces: list[tuple[int, int, int, int]] = []
        buf: _Buffer = self._head
        off = 0
        end = len(buf)
        frame = 0
        packets = 0  # packet records (frames minus the frame-only blocks)
        prev_ts = 0.0
        prev_raw: tuple[int, int, int, int] | None = None  # a dropped packet's time, for a later SPB
        n_udp = n_tcp = n_bytes = 0
        warn = self.warnings.append
        try:
            while True:
                record: Record | None = None
                whole = False  # an enhanced packet block, whole in the buffer: the common case
                if feed is not None and end - off >= hot_len and not pause and _epb_run is not None:
                    # runs of such blocks in C; what it stops in front of is handled below
                    start = frame
                    off, frame, packets, n_udp, n_tcp, n_bytes, last = _epb_run(
                        buf, off, end, order == ">", interfaces, frame, packets, pre is not None, mask,
                        table, floor, pre.udp_ports if pre is not None else None, feed, n_udp, n_tcp, n_bytes,
                    )  # fmt: skip
                    if frame != start:
                        high, low, ifid, dropped = last
                        _lt, divisor, tsoffset, _snap = interfaces[ifid]
                        if dropped:
                            prev_raw = (high, low, divisor, tsoffset)
                        else:
                            prev_ts = ((high << 32) | low) / divisor + tsoffset
                            prev_raw = None
                if end - off >= hot_len and not pause:
                    btype, blen, ifid, ts_high, ts_low, caplen, wirelen, etype, vihl, _total, frag, proto, sport, dport, flags = hot(buf, off)
                    whole = (
                        btype == _BT_EPB
                        and 32 <= blen <= MAX_BLOCK
                        and not blen & 3
                        and blen <= end - off
                        and caplen <= blen - 32
                        and ifid < len(interfaces)
                        and u32(buf, off + blen - 4)[0] == blen
                    )
                if whole:
                    linktype, divisor, tsoffset, _snap = interfaces[ifid]
                    frame += 1
                    packets += 1
                    if pre is not None:
                        if not packets & mask:
                            pre.udp, pre.tcp, pre.bytes, pre.frame = n_udp, n_tcp, n_bytes, frame
                            pre.tick(((ts_high << 32) | ts_low) / divisor + tsoffset)
                            floor = pre.tcp_floor
                        if (
                            linktype == _LINK_ETHERNET
                            and caplen >= _MIN_JUDGED
                            and etype == eth
                            and vihl == 0x45
                            and not frag & fragment
                        ):
                            if proto == 17:
                                if udp_ports is not None and sport not in udp_ports and dport not in udp_ports:
                                    n_udp += 1
                                    n_bytes += wirelen
                                    prev_raw = (ts_high, ts_low, divisor, tsoffset)
                                    off += blen
                                    continue
                            elif proto == 6 and not flags & _TCP_FIN_SYN_RST:
                                entry = table.get(buf[off + 54 : off + 66])
                                if entry.__class__ is int and entry >= floor:  # type: ignore[operator]
                                    n_tcp += 1
                                    n_bytes += wirelen
                                    prev_raw = (ts_high, ts_low, divisor, tsoffset)
                                    off += blen
                                    continue
                    prev_ts = ((ts_high << 32) | ts_low) / divisor + tsoffset
                    prev_raw = None
                    record = frame, prev_ts, linktype, buf[off + 28 : off + 28 + caplen], wirelen
                    off += blen
                else:
                    # the general path: other blocks, short blocks, the end of the buffer, damage
                    if end - off < 12:
                        buf, off = self._more(buf, off, 12)
                        end = len(buf)
                        if end - off < 12:
                            if end > off:
                                warn(f"truncated block at end of file (after frame {frame})")
                            break
                    btype, blen = block_head(buf, off)
                    if btype == _BT_SHB:
                        if end - off < 16:
                            buf, off = self._more(buf, off, 16)
                            end = len(buf)
                            if end - off < 16:
                                warn(f"truncated section header block at end of file (after frame {frame})")
                                break
                        bom = buf[off + 8 : off + 12]
                        if bom == _BOM_LE:
                            order = "<"
                        elif bom == _BOM_BE:
                            order = ">"
                        else:
                            warn(
                                f"damaged section header at frame {frame + 1} (byte-order magic {_hex(bom)}); stopped reading"
                            )
                            break
                        s = structs[order]
                        block_head, u32, epb, hot = s["II"], s["I"], s["epb"], s["hot"]
                        eth, fragment, udp_ports = wire[order]
                        btype, blen = block_head(buf, off)
                        interfaces = []
                    if pause and (btype in (_BT_EPB, _BT_SPB, _BT_PB) or btype in _FRAME_ONLY_BLOCKS):
                        pause = False
                        got = yield None
                        if got is not None:
                            feed, pre = got
                            mask, table, floor, wire = _prefilter_state(pre)
                            eth, fragment, udp_ports = wire[order]
                    if blen < 12 or blen & 3 or blen > MAX_BLOCK:
                        warn(
                            f"damaged block (type 0x{btype:08x}, length {blen}) after frame {frame}: "
                            "stopped reading"
                        )
                        break
                    if end - off < blen:
                        buf, off = self._more(buf, off, blen)
                        end = len(buf)
                        if end - off < blen:
                            what = (
                                f"frame {frame + 1}"
                                if btype in (_BT_EPB, _BT_SPB, _BT_PB)
                                else f"after frame {frame}"
                            )
                            warn(f"truncated record at end of file ({what})")
                            break
                    if u32(buf, off + blen - 4)[0] != blen:
                        warn(
                            f"damaged block (type 0x{btype:08x}): its trailing length does not match, "
                            f"after frame {frame}; stopped reading"
                        )
                        break
                    if btype == _BT_EPB:
                        if blen < 32:
                            warn(f"damaged enhanced packet block at frame {frame + 1}; stopped reading")
                            break
                        ifid, ts_high, ts_low, caplen, wirelen = epb(buf, off + 8)
                        if caplen > blen - 32:
                            warn(
                                f"damaged enhanced packet block at frame {frame + 1} (captured length {caplen}); stopped reading"
                            )
                            break
                        if ifid >= len(interfaces):
                            warn(f"frame {frame + 1} refers to undefined interface {ifid}; stopped reading")
                            break
                        linktype, divisor, tsoffset, _snap = interfaces[ifid]
                        frame += 1
                        prev_ts = ((ts_high << 32) | ts_low) / divisor + tsoffset
                        prev_raw = None
                        record = frame, prev_ts, linktype, buf[off + 28 : off + 28 + caplen], wirelen
                    elif btype == _BT_IDB:
                        if blen < 20:
                            warn(f"damaged interface description block after frame {frame}; stopped reading")
                            break
                        interfaces.append(self._interface(buf, off, blen, s))
                        self.linktypes.add(interfaces[-1][0])
                    elif btype == _BT_SPB:
                        if blen < 16:
                            warn(f"damaged simple packet block at frame {frame + 1}; stopped reading")
                            break
                        if not interfaces:
                            warn(
                                f"frame {frame + 1} (simple packet block) comes before any interface; stopped reading"
                            )
                            break
                        linktype, _div, _tsoff, snap = interfaces[0]
                        wirelen = u32(buf, off + 8)[0]
                        caplen = min(wirelen, blen - 16)
                        if snap:
                            caplen = min(caplen, snap)
                        frame += 1
                        if prev_raw is not None:  # the packet before was dropped unseen: its time is needed now
                            ts_high, ts_low, divisor, tsoffset = prev_raw
                            prev_ts = ((ts_high << 32) | ts_low) / divisor + tsoffset
                            prev_raw = None
                        record = frame, prev_ts, linktype, buf[off + 12 : off + 12 + caplen], wirelen
                    elif btype == _BT_PB:
                        if blen < 32:
                            warn(f"damaged packet block at frame {frame + 1}; stopped reading")
                            break
                        ifid, _drops, ts_high, ts_low, caplen, wirelen = s["pb"](buf, off + 8)
                        if caplen > blen - 32 or ifid >= len(interfaces):
                            warn(f"damaged packet block at frame {frame + 1}; stopped reading")
                            break
                        linktype, divisor, tsoffset, _snap = interfaces[ifid]
                        frame += 1
                        prev_ts = ((ts_high << 32) | ts_low) / divisor + tsoffset
                        prev_raw = None
                        record = frame, prev_ts, linktype, buf[off + 28 : off + 28 + caplen], wirelen
                    elif btype == _BT_DSB:
                        if blen < 20:
                            warn(f"damaged decryption secrets block after frame {frame}; stopped reading")
                            break
                        stype, slen = s["II"](buf, off + 8)
                        if slen > blen - 20:
                            warn(f"damaged decryption secrets block after frame {frame}; stopped reading")
                            break
                        self.secrets.append((stype, buf[off + 16 : off + 16 + slen]))
                    elif btype in _FRAME_ONLY_BLOCKS:
                        frame += 1
                    off += blen
                    if record is None:
                        continue
                    packets += 1
                    if pre is not None and not packets & mask:
                        pre.udp, pre.tcp, pre.bytes, pre.frame = n_udp, n_tcp, n_bytes, frame
                        pre.tick(record[1])
                        floor = pre.tcp_floor
                if feed is None:
                    yield record
                else:
                    feed(*record)
        finally:
            if pre is not None:
                pre.udp, pre.tcp, pre.bytes = n_udp, n_tcp, n_bytes
            self._finish(frame)

    @staticmethod
    def _interface(
        buf: _Buffer, off: int, blen: int, s: dict[str, Callable[..., tuple[int, ...]]]
    ) -> tuple[int, int, int, int]:
        linktype, _reserved, snaplen = s["idb"](buf, off + 8)
        divisor = 1_000_000
        tsoffset = 0
        opt = s["opt"]
        p = off + 16
        stop = off + blen - 4
        while p + 4 <= stop:
            code, length = opt(buf, p)
            if code == 0 or p + 4 + length > stop:
                break
            if code == _OPT_TSRESOL and length >= 1:
                value = buf[p + 4]
                divisor = 2 ** (value & 0x7F) if value & 0x80 else 10**value
            elif code == _OPT_TSOFFSET and length >= 8:
                tsoffset = s["q"](buf, p + 4)[0]
            p += 4 + ((length + 3) & ~3)
        return linktype, divisor, tsoffset, snaplen


def open_capture(path: str | os.PathLike[str]) -> Capture:
    """Open a pcap or pcapng file (optionally gzip-compressed), sniffing the format from its bytes.

    Raises `CaptureError` with a one-line reason when the file cannot be read as a capture.
    """
    p = Path(path)
    if p.is_dir():
        raise CaptureError(p, "is a directory, not a capture file")
    try:
        raw: BinaryIO = open(p, "rb", buffering=0)  # noqa: SIM115 - the Capture owns and closes it
    except FileNotFoundError:
        raise CaptureError(p, "no such file") from None
    except PermissionError:
        raise CaptureError(p, "permission denied") from None
    except OSError as exc:
        raise CaptureError(p, f"cannot open: {exc.strerror or exc}") from None
    try:
        return _sniff(p, raw)
    except BaseException:
        raw.close()
        raise


def _sniff(p: Path, raw: BinaryIO) -> Capture:
    size = os.fstat(raw.fileno()).st_size
    try:
        magic = raw.read(2)
    except OSError as exc:
        raise CaptureError(p, f"cannot read: {exc.strerror or exc}") from None
    if not magic:
        raise CaptureError(p, "empty file")
    raw.seek(0)
    source: BinaryIO | _Gunzip = _Gunzip(raw) if magic == _GZIP else raw
    head = source.read(CHUNK)
    if isinstance(source, _Gunzip):
        if len(head) < 4 and source.error:
            raise CaptureError(p, source.error)
        if not head:
            raise CaptureError(p, "empty file (nothing inside the gzip data)")
    first = head[:4]
    if first in _PCAP_MAGICS:
        fmt = "pcap"
    elif first in netmon.MAGICS:
        fmt = "netmon"
        if isinstance(source, _Gunzip):
            raise CaptureError(p, "a gzip-compressed Network Monitor capture: decompress it first (gunzip)")
    elif first == _PCAPNG_SHB:
        fmt = "pcapng"
        if len(head) < 28:
            raise CaptureError(p, f"truncated pcapng section header ({len(head)} of 28 bytes)")
        bom = head[8:12]
        if bom not in (_BOM_LE, _BOM_BE):
            raise CaptureError(p, f"not a pcapng file (bad byte-order magic {_hex(bom)})")
        order = "<" if bom == _BOM_LE else ">"
        blen, _bom, major = struct.unpack_from(order + "IIH", head, 4)
        if blen < 28 or blen & 3 or blen > MAX_BLOCK:
            raise CaptureError(p, f"corrupt pcapng section header (block length {blen})")
        if major != 1:
            raise CaptureError(p, f"unsupported pcapng version {major}")
    else:
        hint = _NAME_HINTS.get(p.suffix.lower())  # only once the content said nothing readable
        if hint is not None:
            raise CaptureError(p, f"not a pcap, pcapng or Network Monitor file: {hint}")
        for prefix, what in _OTHER_FORMATS:
            if head.startswith(prefix):
                raise CaptureError(p, f"not a pcap or pcapng file: {what}")
        raise CaptureError(p, f"not a pcap, pcapng or Network Monitor file (starts with {_hex(head[:4])})")
    return Capture(p, fmt, size, raw, source, head)
