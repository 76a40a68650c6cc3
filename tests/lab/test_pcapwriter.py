"""Tests for lyncpcap.lab.pcapwriter: classic pcap (µs, ns, big-endian) and pcapng with a DSB."""

from __future__ import annotations

import struct
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import labkit
import pytest

from lyncpcap.lab import pcapwriter

FRAME = bytes.fromhex("00155d00000100155d0000020800") + bytes(46)
PACKETS: list[tuple[pcapwriter.Timestamp, bytes]] = [
    (1709629200.000001, FRAME),
    (Decimal("1709629200.123456789"), FRAME + b"\x01"),
    (Fraction(1709629201_500000000, 10**9), FRAME),
]


def _epochs(path: Path) -> list[str]:
    return [r["frame.time_epoch"][0] for r in labkit.tshark_json(path, ["frame.time_epoch"])]


@pytest.mark.parametrize(
    ("nanosecond", "big_endian", "magic", "filetype", "epochs"),
    [
        (
            False,
            False,
            b"\xd4\xc3\xb2\xa1",
            "pcap",
            ["1709629200.000001000", "1709629200.123457000", "1709629201.500000000"],
        ),
        (
            True,
            False,
            b"\x4d\x3c\xb2\xa1",
            "nsecpcap",
            ["1709629200.000001000", "1709629200.123456789", "1709629201.500000000"],
        ),
        (
            False,
            True,
            b"\xa1\xb2\xc3\xd4",
            "pcap",
            ["1709629200.000001000", "1709629200.123457000", "1709629201.500000000"],
        ),
        (
            True,
            True,
            b"\xa1\xb2\x3c\x4d",
            "nsecpcap",
            ["1709629200.000001000", "1709629200.123456789", "1709629201.500000000"],
        ),
    ],
)
def test_pcap_variants(
    tmp_path: Path, nanosecond: bool, big_endian: bool, magic: bytes, filetype: str, epochs: list[str]
) -> None:
    path = tmp_path / "x.pcap"
    pcapwriter.write_pcap(path, PACKETS, 1, nanosecond=nanosecond, big_endian=big_endian)
    data = path.read_bytes()
    assert data[:4] == magic
    order = ">" if big_endian else "<"
    _, major, minor, _, _, snaplen, linktype = struct.unpack(order + "IHHiIII", data[:24])
    assert (major, minor, snaplen, linktype) == (2, 4, 262144, 1)
    out = labkit.run("capinfos", "-t", "-M", "-c", str(path))
    assert f"File type:           {filetype}\n" in out
    assert "Number of packets:   3" in out
    assert _epochs(path) == epochs


def test_snaplen_cuts_frames(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    pcapwriter.write_pcap(path, [(1.0, bytes(100))], 101, snaplen=40)
    caplen, origlen = struct.unpack("<II", path.read_bytes()[24 + 8 : 24 + 16])
    assert (caplen, origlen) == (40, 100)
    row = labkit.tshark_json(path, ["frame.len", "frame.cap_len"])[0]
    assert row["frame.len"] == ["100"] and row["frame.cap_len"] == ["40"]


def _blocks(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        btype, length = struct.unpack("<II", data[pos : pos + 8])
        assert length % 4 == 0 and struct.unpack("<I", data[pos + length - 4 : pos + length])[0] == length
        out.append((btype, data[pos + 8 : pos + length - 4]))
        pos += length
    return out


def test_pcapng_blocks_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    secrets = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    pcapwriter.write_pcapng(path, PACKETS, 1, secrets=secrets, comment="lab demo", tsresol_ns=True)
    blocks = _blocks(path.read_bytes())
    assert [b[0] for b in blocks] == [0x0A0D0D0A, 1, 0x0A, 6, 6, 6]
    dsb = blocks[2][1]
    stype, slen = struct.unpack("<II", dsb[:8])
    assert stype == 0x544C534B and dsb[8 : 8 + slen] == secrets
    out = labkit.run("capinfos", str(path))
    assert "Capture application: lyncpcap lab" in out
    assert "lab demo" in out
    assert "pcapng" in out
    assert _epochs(path)[1] == "1709629200.123456789"
    # The DSB travels with the file: editcap can strip it again.
    stripped = tmp_path / "stripped.pcapng"
    labkit.run("editcap", "--discard-all-secrets", str(path), str(stripped))
    assert 0x0A not in [b[0] for b in _blocks(stripped.read_bytes())]


def test_pcapng_microseconds_by_default(tmp_path: Path) -> None:
    path = tmp_path / "us.pcapng"
    pcapwriter.write_pcapng(path, PACKETS, 113)
    blocks = _blocks(path.read_bytes())
    assert [b[0] for b in blocks] == [0x0A0D0D0A, 1, 6, 6, 6]
    assert struct.unpack("<H", blocks[1][1][:2])[0] == 113
    assert _epochs(path)[1] == "1709629200.123457000"
    assert labkit.capinfos_encapsulation(path) == "linux-sll"


def test_float_timestamps_use_their_shortest_decimal_form() -> None:
    assert pcapwriter.timestamp_units(0.1, 10**9) == 100_000_000
    assert pcapwriter.timestamp_units(1709629200.000001, 10**6) == 1709629200_000001
    assert pcapwriter.timestamp_units(Decimal("2.5e-6"), 10**6) == 2  # half-even
    assert pcapwriter.timestamp_units(Fraction(7, 2), 10) == 35
