"""The compiled loops (`lyncpcap/read/_scan.c`) hand over exactly what the Python loops do.

`Capture.scan` runs whole pcapng enhanced packet blocks through `_scan.epb_run` and whole pcap
records through `_scan.pcap_run` when they are built (the test command builds them); with
`capture._epb_run` and `capture._pcap_run` set to None the pure Python loops run.  Both must
give the same records, times, prefilter counts, ticks and warnings, on every capture and on
blocks built by hand to reach the corners: byte orders, timestamp units and offsets, stamps
beyond 2^53, simple packet blocks after dropped packets, damage.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import CORPUS, ROOT, sample_captures
from readkit import (
    big_endian_pcapng,
    corpus_names,
    pcapng_block,
    pcapng_epb,
    pcapng_header,
    pcapng_interface,
    read_frames,
)

from lyncpcap.read import capture as capture_module
from lyncpcap.read import open_capture
from lyncpcap.read.capture import Prefilter

UDP_PORTS = frozenset({53, 88, 5060})
CAPTURES = sample_captures() + sample_captures(tls=True) + [CORPUS / n for n in corpus_names()]


def test_the_compiled_loops_are_built() -> None:
    assert capture_module._epb_run is not None, "lyncpcap/read/_scan.c was not compiled (pip install -e .)"
    assert capture_module._pcap_run is not None


def _scan(path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch, *, every: int = 64, ignore: bytes | None = None):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(capture_module, "_epb_run", None)
            m.setattr(capture_module, "_pcap_run", None)
        ticks: list[float] = []
        table: dict[bytes, object] = {}
        if ignore is not None:
            table[ignore] = 5  # an ignored connection's entry, fresh for floor 4
        pre = Prefilter(UDP_PORTS, table, 4, ticks.append, every)
        kept: list[tuple[int, float, int, bytes, int]] = []
        with open_capture(path) as cap:
            cap.scan(lambda f, ts, lt, d, w: kept.append((f, ts, lt, bytes(d), w)), pre)
            warnings = list(cap.warnings)
            frames = cap.frames
    return kept, ticks, (pre.udp, pre.tcp, pre.bytes), warnings, frames


def _first_tcp_key(path: Path) -> bytes | None:
    for _f, _ts, lt, data, _w in read_frames(path):
        if lt == 1 and len(data) >= 54 and data[12:14] == b"\x08\x00" and data[14] == 0x45 and data[23] == 6:
            return data[26:38]
    return None


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_compiled_and_python_loops_agree(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _first_tcp_key(path)
    compiled = _scan(path, True, monkeypatch, ignore=key)
    python = _scan(path, False, monkeypatch, ignore=key)
    assert compiled == python


def _loops_agree(path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Both loops give the same scan of `path` with ticks every 1, 2, 16 and 64 packets; the last."""
    for every in (1, 2, 16, 64):
        compiled = _scan(path, True, monkeypatch, every=every)
        assert compiled == _scan(path, False, monkeypatch, every=every), (path.name, every)
    return compiled


def _frames(n: int) -> list[bytes]:
    return [f[3] for f in read_frames(CORPUS / "suricata-verify/sip-tcp.pcap")[:n]]


def _rtp(n: int) -> bytes:
    """An Ethernet/IPv4/UDP datagram between ports the prefilter drops."""
    payload = bytes([0x80, 0, n & 0xFF, 0]) + bytes(160)
    udp = struct.pack("!HHHH", 16384, 16386, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00" + ip + udp


def _hand_built() -> bytes:
    sip = _frames(4)
    blocks = [
        pcapng_header(),
        pcapng_interface(1, tsresol=9, tsoffset=-5),  # nanoseconds: stamps beyond 2^53
        pcapng_interface(1, tsresol=0x80 | 20, tsoffset=1_000_000),
        pcapng_interface(1),
    ]
    for i in range(40):
        blocks.append(pcapng_epb(i % 3, [1_700_000_000_123_456_789 + i, (1_500_000_000 << 20) + i, 1_600_000_000_000_000 + i][i % 3], _rtp(i)))
        if i % 7 == 0:
            blocks.append(pcapng_epb(i % 3, 1_000_000 * i + 17, sip[i % 4]))
        if i % 11 == 5:  # a simple packet block right after a dropped packet takes its time
            blocks.append(pcapng_block(3, struct.pack("<I", len(sip[1])) + sip[1]))
    return b"".join(blocks)


def test_hand_built_corners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    little = _hand_built()
    cases = {
        "little.pcapng": little,
        "mixed.pcapng": little + big_endian_pcapng_bytes(little, tmp_path) + little,
        "cut.pcapng": little[: len(little) - 37],
        "damaged.pcapng": little[:900] + b"\xff\xff\xff\xff" + little[904:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        kept, _ticks, (udp, _tcp, _bytes), _warnings, _frames_seen = _loops_agree(path, monkeypatch)
        if name == "little.pcapng":
            assert udp == 40 and len(kept) == 6 + 4  # the SIP frames and the simple packet blocks
            by_frame = {k[0]: k for k in kept}
            # the simple packet block after the dropped datagram of frame 7 (microseconds) has its time
            assert by_frame[8][1] == (1_600_000_000_000_000 + 5) / 1_000_000
            assert by_frame[2][1] == 17 / 10**9 - 5  # nanosecond units, offset -5 s


def big_endian_pcapng_bytes(data: bytes, tmp_path: Path) -> bytes:
    src = tmp_path / "src.pcapng"
    src.write_bytes(data)
    return big_endian_pcapng(src)


def test_a_feed_error_stops_the_compiled_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "sample_captures" / "02-desktop-external-ntlm.pcapng"
    seen: list[int] = []

    def feed(frame: int, ts: float, lt: int, data: bytes, wirelen: int) -> None:
        seen.append(frame)
        if frame == 5:
            raise RuntimeError("sink failed")

    with open_capture(path) as cap, pytest.raises(RuntimeError, match="sink failed"):
        cap.scan(feed)
    assert seen == [1, 2, 3, 4, 5]


def _pcap(records: list[tuple[int, int, bytes, int]], *, big: bool = False, nano: bool = False, linktype: int = 1,
          snaplen: int = 65535) -> bytes:
    o = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, wirelen in records:
        out.append(struct.pack(o + "IIII", sec, frac, len(data), wirelen) + data)
    return b"".join(out)


def test_hand_built_pcap_corners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sip = _frames(4)
    records = []
    for i in range(50):
        records.append((1_700_000_000 + i, 999_999 - i, _rtp(i), 214))
        if i % 6 == 0:
            records.append((1_700_000_000 + i, 123_456 + i, sip[i % 4], len(sip[i % 4]) + (40 if i % 12 == 0 else 0)))
    cases = {
        "little.pcap": _pcap(records),
        "big.pcap": _pcap(records, big=True),
        "nano.pcap": _pcap([(s, f * 1000 + 7, d, w) for s, f, d, w in records], nano=True),
        "short-snaplen.pcap": _pcap(records, snaplen=100),
        "sll.pcap": _pcap([(s, f, d[:12] + d, w) for s, f, d, w in records], linktype=113),  # not judged, still ticks
        "cut.pcap": _pcap(records)[:-50],
        "damaged.pcap": _pcap(records[:20]) + struct.pack("<IIII", 1, 2, 10_000_000, 10) + _pcap(records)[24:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        kept, _ticks, (udp, _tcp, _bytes), warnings, frames_seen = _loops_agree(path, monkeypatch)
        if name == "little.pcap":
            assert udp == 50 and len(kept) == 9 and frames_seen == 59
            assert kept[0][1] == 1_700_000_000 + 123_456 / 1_000_000
        if name == "sll.pcap":  # nothing judged, but the prefilter's ticks still come
            assert udp == 0 and len(kept) == 59
            assert len(_scan(path, True, monkeypatch, every=16)[1]) == 59 // 16
        if name in ("cut.pcap", "damaged.pcap"):
            assert warnings
