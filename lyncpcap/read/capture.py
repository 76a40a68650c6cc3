"""Stream packets out of pcap and pcapng files, plain or gzip-compressed.

`open_capture` sniffs the container from the first bytes (never the file name) and returns a
`Capture` that yields one tuple per frame.  Plain files are read through a sliding 8 MiB memory
map, gzip files are inflated 1 MiB at a time, so memory does not grow with the file.  Damage at
the end of a file becomes a warning, not an error.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from lyncpcap.errors import CaptureError

__all__ = ["Capture", "Record", "open_capture"]

#: (frame number, timestamp in seconds since the epoch, link type, captured bytes, original length)
Record = tuple[int, float, int, bytes, int]
_Buffer = bytes | mmap.mmap

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
        self._damage_reported = False
        self._mapped = not self.compressed  # plain files: map WINDOW bytes at a time
        self._base = 0  # file offset of the buffer being read (mapped mode)
        self._update_position()
        if fmt == "pcap":
            self._parse_pcap_header()

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
        if self._iterated:
            raise RuntimeError(f"{self.path}: a Capture can be iterated only once")
        self._iterated = True
        if self.format == "pcap":
            return self._pcap_records()
        return self._pcapng_records()

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

    def _pcap_records(self) -> Iterator[Record]:
        unpack = struct.Struct(self._order + "IIII").unpack_from
        divisor = self._divisor
        linktype = self._linktype
        snaplen = self._snaplen
        over_snaplen = 0
        buf: _Buffer = self._head
        off = 24
        end = len(buf)
        frame = 0
        try:
            while True:
                if end - off < 16:
                    buf, off = self._more(buf, off, 16)
                    end = len(buf)
                    if end - off < 16:
                        if end > off:
                            self.warnings.append(f"truncated record at end of file (frame {frame + 1})")
                        break
                sec, frac, caplen, wirelen = unpack(buf, off)
                start = off + 16
                stop = start + caplen
                if caplen > MAX_PACKET:
                    self.warnings.append(
                        f"record of frame {frame + 1} claims {caplen} captured bytes (more than "
                        f"{MAX_PACKET}): the file is damaged there; stopped reading"
                    )
                    break
                if stop > end:
                    buf, off = self._more(buf, off, 16 + caplen)
                    end = len(buf)
                    start = off + 16
                    stop = start + caplen
                    if stop > end:
                        self.warnings.append(f"truncated record at end of file (frame {frame + 1})")
                        break
                if caplen > snaplen:
                    over_snaplen += 1
                frame += 1
                yield frame, sec + frac / divisor, linktype, buf[start:stop], wirelen
                off = stop
        finally:
            if over_snaplen and snaplen:
                self.warnings.append(
                    f"{over_snaplen} records are longer than the file's snapshot length ({snaplen} bytes)"
                )
            self._finish(frame)

    # -- pcapng --------------------------------------------------------------------------------

    def _pcapng_records(self) -> Iterator[Record]:
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
                )
            }
            for order in "<>"
        }
        s = structs["<"]
        block_head = s["II"]
        u32 = s["I"]
        epb = s["epb"]
        # per interface: (link type, timestamp divisor, timestamp offset, snaplen)
        interfaces: list[tuple[int, int, int, int]] = []
        buf: _Buffer = self._head
        off = 0
        end = len(buf)
        frame = 0
        prev_ts = 0.0
        warn = self.warnings.append
        try:
            while True:
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
                        s = structs["<"]
                    elif bom == _BOM_BE:
                        s = structs[">"]
                    else:
                        warn(
                            f"damaged section header at frame {frame + 1} (byte-order magic {_hex(bom)}); stopped reading"
                        )
                        break
                    block_head, u32, epb = s["II"], s["I"], s["epb"]
                    btype, blen = block_head(buf, off)
                    interfaces = []
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
                    yield frame, prev_ts, linktype, buf[off + 28 : off + 28 + caplen], wirelen
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
                    yield frame, prev_ts, linktype, buf[off + 12 : off + 12 + caplen], wirelen
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
                    yield frame, prev_ts, linktype, buf[off + 28 : off + 28 + caplen], wirelen
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
        finally:
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
        for prefix, what in _OTHER_FORMATS:
            if head.startswith(prefix):
                raise CaptureError(p, f"not a pcap or pcapng file: {what}")
        raise CaptureError(p, f"not a pcap or pcapng file (starts with {_hex(head[:4])})")
    return Capture(p, fmt, size, raw, source, head)
