"""lyncpcap.read.capture on the corpus and on variants made with tshark's tools at test time."""

from __future__ import annotations

import gzip
import os
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from readkit import (
    CORPUS,
    big_endian_pcap,
    big_endian_pcapng,
    corpus_names,
    expected,
    pcapng_block,
    pcapng_epb,
    pcapng_header,
    pcapng_interface,
    read_frames,
    run,
    tshark_epochs,
)

from lyncpcap.errors import CaptureError
from lyncpcap.read import open_capture

LINKTYPES = {"ether": 1, "rawip": 101, "null": 0}
SECRETS_TLS = 0x544C534B


@pytest.mark.parametrize("name", corpus_names())
def test_corpus_file_reads_like_capinfos(name: str) -> None:
    facts = expected()[name]
    with open_capture(CORPUS / name) as cap:
        frames = list(cap)
        assert cap.format == facts["capinfos_file_type"]
        assert not cap.compressed
        assert cap.warnings == []
        assert cap.linktypes == {LINKTYPES[facts["encapsulation"]]}
        assert cap.size_bytes == facts["size"]
        assert cap.position == facts["size"]
        assert cap.frames == facts["packet_count"]
    assert [f[0] for f in frames] == list(range(1, facts["packet_count"] + 1))
    assert all(len(data) <= wirelen for _, _, _, data, wirelen in frames)


def test_webdav_is_sniffed_as_pcapng_despite_its_name() -> None:
    with open_capture(CORPUS / "ndpi/webdav.pcap") as cap:
        assert cap.format == "pcapng"


def test_quic_capture_yields_its_decryption_secrets_block() -> None:
    with open_capture(CORPUS / "ndpi/quic-33.pcapng") as cap:
        assert cap.secrets == []  # filled while reading, in file order
        frames = list(cap)
        assert len(frames) == 7
        assert len(cap.secrets) == 1
        secrets_type, data = cap.secrets[0]
    assert secrets_type == SECRETS_TLS
    labels = {line.split()[0] for line in data.decode("ascii").splitlines() if line.strip()}
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in labels
    assert "SERVER_TRAFFIC_SECRET_0" in labels


@pytest.mark.parametrize(
    "name", ["zeek/erspan.pcap", "ndpi/webdav.pcap", "illustrated-tls/tls12-capture.pcap"]
)
def test_timestamps_match_tshark(name: str) -> None:
    frames = read_frames(CORPUS / name)
    epochs = tshark_epochs(CORPUS / name)
    assert len(frames) == len(epochs)
    for (_, ts, *_rest), text in zip(frames, epochs, strict=True):
        assert ts == pytest.approx(float(text), abs=1e-6)


# -- variants of the same packets ------------------------------------------------------------------


def _same_frames(a: list, b: list) -> None:  # type: ignore[type-arg]
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x[0], x[2], x[3], x[4]) == (y[0], y[2], y[3], y[4])
        assert x[1] == pytest.approx(y[1], abs=1e-6)


VARIANT_SOURCES = ["zeek/erspan.pcap", "ndpi/webdav.pcap", "suricata-verify/dns-srv.pcap", "ndpi/teams.pcap"]


@pytest.mark.parametrize("name", VARIANT_SOURCES)
@pytest.mark.parametrize("filetype", ["pcap", "nsecpcap", "pcapng"])
def test_editcap_formats_give_identical_frames(name: str, filetype: str, tmp_path: Path) -> None:
    out = tmp_path / f"variant.{filetype}"
    run("editcap", "-F", filetype, CORPUS / name, out)
    with open_capture(out) as cap:
        frames = list(cap)
        assert cap.format == ("pcapng" if filetype == "pcapng" else "pcap")
        assert cap.warnings == []
    _same_frames(frames, read_frames(CORPUS / name))


@pytest.mark.parametrize("name", VARIANT_SOURCES)
def test_gzip_is_sniffed_and_streamed(name: str, tmp_path: Path) -> None:
    out = tmp_path / "capture.bin"  # no telling suffix: the magic decides
    out.write_bytes(gzip.compress((CORPUS / name).read_bytes()))
    with open_capture(out) as cap:
        assert cap.compressed
        assert cap.format == expected()[name]["capinfos_file_type"]
        frames = list(cap)
        assert cap.position == out.stat().st_size  # compressed offset
        assert cap.warnings == []
    _same_frames(frames, read_frames(CORPUS / name))


@pytest.mark.parametrize("name", ["zeek/erspan.pcap", "illustrated-tls/tls12-capture.pcap"])
def test_big_endian_pcap(name: str, tmp_path: Path) -> None:
    out = tmp_path / "be.pcap"
    big_endian_pcap(CORPUS / name, out)
    assert out.read_bytes()[:4] == b"\xa1\xb2\xc3\xd4"
    _same_frames(read_frames(out), read_frames(CORPUS / name))


def test_big_endian_nanosecond_pcap(tmp_path: Path) -> None:
    nsec = tmp_path / "ns.pcap"
    run("editcap", "-F", "nsecpcap", CORPUS / "zeek/erspan.pcap", nsec)
    out = tmp_path / "be-ns.pcap"
    big_endian_pcap(nsec, out)
    assert out.read_bytes()[:4] == b"\xa1\xb2\x3c\x4d"
    _same_frames(read_frames(out), read_frames(CORPUS / "zeek/erspan.pcap"))


def test_snaplen_truncated_frames_keep_their_wire_length(tmp_path: Path) -> None:
    out = tmp_path / "s60.pcap"
    run("editcap", "-F", "pcap", "-s", "60", CORPUS / "bruteshark/http-ntlm.pcap", out)
    cut = read_frames(out)
    full = read_frames(CORPUS / "bruteshark/http-ntlm.pcap")
    assert len(cut) == len(full) == 80
    for c, f in zip(cut, full, strict=True):
        assert c[3] == f[3][:60]
        assert c[4] == f[4]


def test_injected_secrets_are_collected(tmp_path: Path) -> None:
    out = tmp_path / "dsb.pcapng"
    keylog = CORPUS / "zeek/tls12-decryption.keylog"
    run("editcap", "--inject-secrets", f"tls,{keylog}", CORPUS / "zeek/tls12-decryption.pcap", out)
    with open_capture(out) as cap:
        frames = list(cap)
        assert cap.format == "pcapng"
        assert cap.secrets == [(SECRETS_TLS, keylog.read_bytes())]
    _same_frames(frames, read_frames(CORPUS / "zeek/tls12-decryption.pcap"))


def test_sections_with_either_byte_order_number_frames_continuously(tmp_path: Path) -> None:
    first = tmp_path / "a.pcapng"
    second = tmp_path / "b.pcapng"
    run("editcap", "-F", "pcapng", CORPUS / "illustrated-tls/tls12-capture.pcap", first)
    run("editcap", "-F", "pcapng", CORPUS / "suricata-verify/dns-srv.pcap", second)
    joined = tmp_path / "joined.pcapng"
    joined.write_bytes(first.read_bytes() + big_endian_pcapng(second) + first.read_bytes())
    with open_capture(joined) as cap:
        frames = list(cap)
        assert cap.linktypes == {0, 101}
        assert cap.warnings == []
    a = read_frames(CORPUS / "illustrated-tls/tls12-capture.pcap")
    b = read_frames(CORPUS / "suricata-verify/dns-srv.pcap")
    assert [f[0] for f in frames] == list(range(1, 2 * len(a) + len(b) + 1))
    assert [f[2:] for f in frames] == [f[2:] for f in a + b + a]
    # tshark numbers the frames of a multi-section file the same way
    assert len(tshark_epochs(joined)) == len(frames)


# -- pcapng blocks built by hand, checked against tshark ---------------------------------------


def _corpus_ethernet_frames(name: str, count: int) -> list[bytes]:
    return [f[3] for f in read_frames(CORPUS / name)[:count]]


def test_timestamp_resolution_and_offset_options(tmp_path: Path) -> None:
    pkts = _corpus_ethernet_frames("suricata-verify/sip-tcp.pcap", 3)
    blocks = [
        pcapng_header(),
        pcapng_interface(1, tsresol=0x80 | 20, tsoffset=1_000_000),  # 2^-20 s units, +1e6 s
        pcapng_interface(1, tsresol=3),  # milliseconds
        pcapng_interface(1),  # default microseconds
        pcapng_epb(0, 1_500_000_000 << 20 | 1 << 19, pkts[0]),
        pcapng_epb(1, 1_600_000_000_250, pkts[1]),
        pcapng_epb(2, 1_700_000_000_000_001, pkts[2]),
    ]
    out = tmp_path / "tsresol.pcapng"
    out.write_bytes(b"".join(blocks))
    stamps = [f[1] for f in read_frames(out)]
    assert stamps == [1_501_000_000.5, 1_600_000_000.25, pytest.approx(1_700_000_000.000001, abs=1e-7)]
    for ts, text in zip(stamps, tshark_epochs(out), strict=True):
        assert ts == pytest.approx(float(text), abs=1e-6)


def test_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    pkts = _corpus_ethernet_frames("suricata-verify/sip-tcp.pcap", 4)
    obsolete = struct.pack("<HHIIII", 0, 0, 0, 2_000_000, len(pkts[1]), len(pkts[1])) + pkts[1]
    blocks = [
        pcapng_header(),
        pcapng_interface(1, snaplen=80),
        pcapng_epb(0, 1_000_000, pkts[0]),
        pcapng_block(3, struct.pack("<I", len(pkts[2])) + pkts[2][:80]),  # SPB: no timestamp, snaplen 80
        pcapng_block(2, obsolete),
        pcapng_block(3, struct.pack("<I", len(pkts[3])) + pkts[3][:80]),
    ]
    out = tmp_path / "spb.pcapng"
    out.write_bytes(b"".join(blocks))
    frames = read_frames(out)
    assert [(f[0], f[1]) for f in frames] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
    assert frames[1][3] == pkts[2][:80] and frames[1][4] == len(pkts[2])
    assert frames[2][3] == pkts[1]
    assert run("tshark", "-n", "-r", out, "-T", "fields", "-e", "frame.number").split() == [
        "1",
        "2",
        "3",
        "4",
    ]


def test_non_packet_records_take_frame_numbers_like_tshark(tmp_path: Path) -> None:
    pkts = _corpus_ethernet_frames("suricata-verify/sip-tcp.pcap", 3)
    blocks = [
        pcapng_header(),
        pcapng_interface(1),
        pcapng_epb(0, 1_000_000, pkts[0]),
        pcapng_block(0x00000BAD, struct.pack("<I", 32473) + b"custom"),  # a frame to tshark
        pcapng_block(0x40000BAD, struct.pack("<I", 32473) + b"custom"),  # a frame to tshark
        pcapng_block(9, b"__REALTIME_TIMESTAMP=1\nMESSAGE=x\n"),  # systemd journal: a frame
        pcapng_block(5, struct.pack("<III", 0, 0, 0)),  # interface statistics: not a frame
        pcapng_block(4, struct.pack("<HH", 0, 0)),  # name resolution: not a frame
        pcapng_block(0x1234, b"unknown"),  # skipped
        pcapng_epb(0, 2_000_000, pkts[1]),
        pcapng_epb(0, 3_000_000, pkts[2]),
    ]
    out = tmp_path / "records.pcapng"
    out.write_bytes(b"".join(blocks))
    frames = read_frames(out)
    assert [f[0] for f in frames] == [1, 5, 6]
    tcp_frames = run("tshark", "-n", "-r", out, "-Y", "tcp", "-T", "fields", "-e", "frame.number").split()
    assert tcp_frames == ["1", "5", "6"]


# -- damage and bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("filetype", ["pcap", "pcapng"])
@pytest.mark.parametrize("compress", [False, True])
def test_file_cut_mid_record_warns_and_keeps_earlier_frames(
    filetype: str, compress: bool, tmp_path: Path
) -> None:
    source = tmp_path / f"full.{filetype}"
    run("editcap", "-F", filetype, CORPUS / "zeek/erspan.pcap", source)
    data = source.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) - 10])  # like `head -c`: the last record loses its tail
    if compress:
        cut.write_bytes(gzip.compress(cut.read_bytes()))
    with open_capture(cut) as cap:
        frames = list(cap)
        warnings = cap.warnings
    assert len(frames) == 286
    _same_frames(frames, read_frames(CORPUS / "zeek/erspan.pcap")[:286])
    assert warnings == ["truncated record at end of file (frame 287)"]


def test_cut_gzip_stream_warns_and_keeps_earlier_frames(tmp_path: Path) -> None:
    packed = gzip.compress((CORPUS / "ndpi/teams.pcap").read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with open_capture(cut) as cap:
        frames = list(cap)
        warnings = cap.warnings
    assert 100 < len(frames) < 1540
    _same_frames(frames, read_frames(CORPUS / "ndpi/teams.pcap")[: len(frames)])
    assert any("compressed data is damaged or cut short" in w for w in warnings)
    assert warnings[-1] == f"truncated record at end of file (frame {len(frames) + 1})"


def test_absurd_record_length_stops_cleanly(tmp_path: Path) -> None:
    data = bytearray((CORPUS / "suricata-verify/sip-tcp.pcap").read_bytes())
    frames = read_frames(CORPUS / "suricata-verify/sip-tcp.pcap")
    off = 24 + sum(16 + len(f[3]) for f in frames[:5])  # record header of frame 6
    struct.pack_into("<I", data, off + 8, 0x7FFFFFF0)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    with open_capture(bad) as cap:
        got = list(cap)
        assert len(cap.warnings) == 1
        assert "frame 6" in cap.warnings[0] and "damaged" in cap.warnings[0]
    _same_frames(got, frames[:5])


def test_damaged_pcapng_block_length_stops_cleanly(tmp_path: Path) -> None:
    source = tmp_path / "ok.pcapng"
    run("editcap", "-F", "pcapng", CORPUS / "suricata-verify/sip-tcp.pcap", source)
    data = bytearray(source.read_bytes())
    off = 0
    epbs = []
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if btype == 6:
            epbs.append(off)
        off += blen
    for bad_length in (7, 0x7FFFFFF0):
        copy = bytearray(data)
        struct.pack_into("<I", copy, epbs[4] + 4, bad_length)
        path = tmp_path / f"bad{bad_length}.pcapng"
        path.write_bytes(bytes(copy))
        with open_capture(path) as cap:
            got = list(cap)
            assert len(cap.warnings) == 1 and "damaged block" in cap.warnings[0]
        assert len(got) == 4
    copy = bytearray(data)  # trailing length that disagrees with the leading one
    blen = struct.unpack_from("<I", copy, epbs[2] + 4)[0]
    struct.pack_into("<I", copy, epbs[2] + blen - 4, blen + 4)
    path = tmp_path / "trailer.pcapng"
    path.write_bytes(bytes(copy))
    with open_capture(path) as cap:
        assert len(list(cap)) == 2
        assert "trailing length" in cap.warnings[0]


def _capture_error(path: Path) -> str:
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return info.value.problem


def test_missing_file(tmp_path: Path) -> None:
    assert _capture_error(tmp_path / "nope.pcap") == "no such file"


def test_directory(tmp_path: Path) -> None:
    assert "directory" in _capture_error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert _capture_error(path) == "empty file"


def test_html_file(tmp_path: Path) -> None:
    path = tmp_path / "page.pcap"
    path.write_bytes(b"<html><body>not a capture</body></html>")
    assert _capture_error(path) == "not a pcap, pcapng or Network Monitor file (starts with 3c 68 74 6d)"


def test_random_bytes(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "noise.pcapng"
    path.write_bytes(b"\x13\x37" + bytes(rng.randrange(256) for _ in range(5000)))
    assert _capture_error(path).startswith("not a pcap, pcapng or Network Monitor file (starts with 13 37 ")


def test_truncated_global_header(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(struct.pack("<IHH", 0xA1B2C3D4, 2, 4))
    assert _capture_error(path) == "truncated pcap file header (8 of 24 bytes)"


def test_truncated_pcapng_section_header(tmp_path: Path) -> None:
    path = tmp_path / "short.pcapng"
    path.write_bytes(pcapng_header()[:20])
    assert _capture_error(path) == "truncated pcapng section header (20 of 28 bytes)"


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(200)))
    assert _capture_error(path).startswith("corrupt gzip data")


def test_compressed_with_something_else(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 40)
    assert "zstd" in _capture_error(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)
    path.chmod(0)
    assert _capture_error(path) == "permission denied"


def test_a_capture_is_read_once() -> None:
    with open_capture(CORPUS / "suricata-verify/dns-srv.pcap") as cap:
        assert len(list(cap)) == 2
        with pytest.raises(RuntimeError):
            iter(cap)


# -- memory -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_memory_does_not_grow_with_the_file(compress: bool, tmp_path: Path) -> None:
    source = read_frames(CORPUS / "ndpi/teams.pcap")
    path = tmp_path / "big.pcap"
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for _ in range(30):  # about 21 MB
            for _, ts, _, data, wirelen in source:
                sec = int(ts)
                out.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), wirelen) + data)
    if compress:
        path.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    size = path.stat().st_size
    positions = []
    tracemalloc.start()
    try:
        with open_capture(path) as cap:
            count = 0
            for _ in cap:
                count += 1
                if count % 5000 == 0:
                    positions.append(cap.position)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 30 * len(source)
    assert peak < 6 << 20, f"peak {peak} bytes while reading {size} bytes"
    assert positions == sorted(positions) and 0 < positions[0] < size
    assert cap.position == size


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc/self/status")
def test_mapped_file_pages_are_released_as_reading_moves_on(tmp_path: Path) -> None:
    source = (CORPUS / "ndpi/teams.pcap").read_bytes()
    path = tmp_path / "big.pcap"
    path.write_bytes(source + source[24:] * 79)  # about 56 MB
    before = _rss_file_kib()
    highest = before
    with open_capture(path) as cap:
        for count, _ in enumerate(cap, 1):
            if count % 4000 == 0:
                highest = max(highest, _rss_file_kib())
    assert count == 80 * 1540
    assert (highest - before) * 1024 < 20 << 20, f"{highest - before} KiB of the file stayed mapped"


def test_modified_pcap_is_named(tmp_path: Path) -> None:
    path = tmp_path / "kuznetsov.pcap"
    path.write_bytes(b"\x34\xcd\xb2\xa1" + b"\0" * 40)
    assert "modified (Kuznetsov) pcap" in _capture_error(path)


def test_empty_gzip(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap.gz"
    path.write_bytes(gzip.compress(b""))
    assert _capture_error(path) == "empty file (nothing inside the gzip data)"


def test_gzip_with_several_members(tmp_path: Path) -> None:
    data = (CORPUS / "zeek/erspan.pcap").read_bytes()
    path = tmp_path / "members.pcap.gz"
    path.write_bytes(gzip.compress(data[:50000]) + gzip.compress(data[50000:]))
    with open_capture(path) as cap:
        frames = list(cap)
        assert cap.warnings == []
    _same_frames(frames, read_frames(CORPUS / "zeek/erspan.pcap"))
