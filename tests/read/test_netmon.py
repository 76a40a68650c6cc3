"""Microsoft Network Monitor captures: every sample re-written as Network Monitor 3.x writes it
(format 2.3) and by tshark's editcap (1.x, 2.0) reads into the analysis of the original; frame
numbers and times are tshark's; damage is a warning or a one-line error, never a traceback."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, sample_captures, truth_path
from readkit import run
from truth import differences, load

import lyncpcap
from lyncpcap.errors import CaptureError
from lyncpcap.lab.pcapwriter import (
    FILETIME_EPOCH,
    NETMON_DNS_CACHE,
    NETMON_ETHERNET,
    NETMON_FILTER,
    NETMON_NETEVENT,
    NETMON_NETWORK_INFO,
    NETMON_NETWORK_INFO_EX,
    NETMON_PCAP_BASE,
    NetmonFrame,
    etw_event,
    ndis_fragment,
    timestamp_units,
    write_netmon,
)
from lyncpcap.read import open_capture


def _frames(capture: Path) -> list[NetmonFrame]:
    """The capture's frames as Network Monitor would write them: Ethernet as Ethernet, other link
    types as converted pcap frames (0xE000 | link type)."""
    with open_capture(capture) as cap:
        return [
            (ts, bytes(data), NETMON_ETHERNET if linktype == 1 else NETMON_PCAP_BASE | linktype)
            for _n, ts, linktype, data, _w in cap
        ]


def _linktype(capture: Path) -> int:
    with open_capture(capture) as cap:
        cap.read_head()
        return min(cap.linktypes)


def _with_records_that_are_not_frames(frames: list[NetmonFrame]) -> list[NetmonFrame]:
    """Network Monitor's DNS-cache and network-info records among the packets (not frames to
    Wireshark 4), and an ETW event after the last packet (a frame, but no packet)."""
    out = list(frames)
    middle = len(out) // 2
    ts = out[middle][0]
    out[middle:middle] = [(ts, b"\x01" * 24, NETMON_DNS_CACHE), (ts, b"\x02" * 30, NETMON_NETWORK_INFO)]
    out.append((out[-1][0], b"\x03" * 40, NETMON_NETEVENT))
    return out


def _document(path: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "lyncpcap", "analyze", str(path), "--format", "json", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def _analysis_part(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "captures"}


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_every_sample_as_network_monitor_3_writes_it_gives_the_same_analysis(
    capture: Path, tmp_path: Path
) -> None:
    """Sessions, steps (frame numbers and times too), auth, TLS, clients and findings: the same."""
    netmon = tmp_path / (capture.stem + ".cap")
    write_netmon(netmon, _with_records_that_are_not_frames(_frames(capture)))
    original, converted = _document(capture), _document(netmon)
    assert _analysis_part(converted) == _analysis_part(original)
    (cap,) = converted["captures"]
    assert cap["format"] == "netmon" and cap["warnings"] == original["captures"][0]["warnings"]


def test_a_decrypted_capture_numbers_frames_as_tshark_does(tmp_path: Path) -> None:
    """tshark decrypts the TLS of the Network Monitor file itself; its frame numbers, counting the
    filter frame Network Monitor puts first, must be lyncpcap's."""
    capture = SAMPLES / "02-desktop-external-ntlm-tls.pcapng"
    keylog = ["--keylog", str(SAMPLES / "02-desktop-external-ntlm-tls.keylog")]
    frames = _frames(capture)
    netmon = tmp_path / "tls.cap"
    write_netmon(netmon, [(frames[0][0], "tcp port 443".encode("utf-16-le"), NETMON_FILTER), *frames])
    original, converted = _document(capture, *keylog), _document(netmon, *keylog)
    assert converted["captures"][0]["decrypted"]
    want = [(s["step"], s["frame"] + 1, s["result"]) for x in original["sessions"] for s in x["steps"]]
    got = [(s["step"], s["frame"], s["result"]) for x in converted["sessions"] for s in x["steps"]]
    assert len(want) > 10 and got == want


def test_frame_numbers_times_and_lengths_are_tsharks(tmp_path: Path, tshark: str) -> None:
    """Filter and adapter frames first, records that are not frames in the middle, an ETW event,
    802.11 frames with Network Monitor's radio header (numbered, not read), and a 2.3 frame whose
    UTC time disagrees with its offset from the start: tshark is the reference."""
    frames = _frames(SAMPLES / "09a-wrong-password.pcapng")
    t0 = frames[0][0]
    mixed: list[NetmonFrame] = [
        (t0, "ip".encode("utf-16-le"), NETMON_FILTER),
        (t0, b"\x00" * 64, NETMON_NETWORK_INFO_EX),
        *frames[:10],
        (frames[10][0], b"\x02" * 30, NETMON_NETWORK_INFO),
        (frames[10][0], b"\x01\x20\x00" + b"\x00" * 29 + b"\x08\x02" + b"\x00" * 30, 6),
        *_with_records_that_are_not_frames(frames[10:]),
    ]
    path = tmp_path / "mixed.cap"
    write_netmon(path, mixed)
    raw = bytearray(path.read_bytes())
    # frame 3's UTC FILETIME one and a quarter seconds later than header start + offset says
    (table_offset,) = struct.unpack_from("<I", raw, 24)
    (third,) = struct.unpack_from("<I", raw, table_offset + 8)
    caplen = struct.unpack_from("<I", raw, third + 12)[0]
    at = third + 16 + caplen + 6
    struct.pack_into("<Q", raw, at, struct.unpack_from("<Q", raw, at)[0] + 12_500_000)
    path.write_bytes(bytes(raw))

    fields = run(tshark, "-n", "-r", path, "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch",
                 "-e", "frame.cap_len", "-e", "frame.protocols")  # fmt: skip
    rows = [line.split("\t") for line in fields.splitlines()]
    packets = {
        int(n): (t, int(length)) for n, t, length, protocols in rows if protocols.startswith(("eth", "sll"))
    }
    with open_capture(path) as cap:
        got = {n: (f"{ts:.6f}", len(data)) for n, ts, _lt, data, _w in cap}
        warnings = cap.warnings
        assert cap.frames == len(rows)
    assert got == {n: (f"{float(t):.6f}", length) for n, (t, length) in packets.items()}
    assert len(got) == len(frames) and min(got) == 3
    assert float(packets[3][0]) - t0 == pytest.approx(1.25, abs=1e-6)
    assert warnings == [
        "1 Network Monitor frame of media type 6 (802.11 with Network Monitor's radio header) skipped: "
        "lyncpcap reads Ethernet and IP"
    ]


@pytest.mark.parametrize("version", ["netmon1", "netmon2"])
def test_files_written_by_editcap_match_the_truth(version: str, tmp_path: Path) -> None:
    """editcap writes formats 1.1 (times in milliseconds) and 2.0 (no trailers)."""
    for capture in sample_captures():
        with open_capture(capture) as cap:
            cap.read_head()
            if cap.linktypes != {1}:
                continue  # Network Monitor 1.x and 2.0 have one media type per file: Ethernet here
        out = tmp_path / (capture.stem + ".cap")
        run("editcap", "-F", version, capture, out)
        assert out.read_bytes()[:4] == (b"RTSS" if version == "netmon1" else b"GMBU")
        problems = differences(lyncpcap.analyze(out), load(truth_path(capture)))
        assert not problems, (capture.name, problems)


@pytest.mark.parametrize("version", [(2, 0), (2, 1), (2, 2), (1, 1)])
def test_every_format_version_reads_the_same_packets(version: tuple[int, int], tmp_path: Path) -> None:
    """Times to the format's resolution (the sample's are nanoseconds), bytes and numbers as written."""
    capture = SAMPLES / "07-passive-adfs-2fa.pcap"
    frames = _frames(capture)
    path = tmp_path / "v.cap"
    write_netmon(path, frames, version=version)
    per_second = 1000 if version[0] == 1 else 1_000_000
    with open_capture(capture) as cap:
        want = [(n, timestamp_units(ts, per_second), bytes(d)) for n, ts, _lt, d, _w in cap]
    with open_capture(path) as cap:
        got = [(n, round(ts * per_second), bytes(d)) for n, ts, _lt, d, _w in cap]
        assert cap.warnings == []
    assert got == want


def test_a_capture_never_saved_is_read_in_file_order_with_a_warning(tmp_path: Path) -> None:
    """Network Monitor writes the frame table when it closes the file: without one (a stopped or
    crashed capture), records are read one after the other, and the analysis is the same."""
    capture = SAMPLES / "02-desktop-external-ntlm.pcapng"
    path = tmp_path / "unsaved.cap"
    write_netmon(path, _frames(capture), frame_table=False)
    a, b = lyncpcap.analyze(path), lyncpcap.analyze(capture)
    assert a.to_json()["sessions"] == b.to_json()["sessions"]
    assert any("frame table is missing" in w for w in a.captures[0].warnings)


def test_frames_are_found_through_the_table_wherever_they_are(tmp_path: Path) -> None:
    """Some files do not start their first frame at byte 128, or leave holes: the table says."""
    capture = SAMPLES / "09b-locked-account.pcapng"
    path = tmp_path / "holes.cap"
    write_netmon(path, _frames(capture), first_offset=1000)
    a, b = lyncpcap.analyze(path), lyncpcap.analyze(capture)
    assert a.to_json()["sessions"] == b.to_json()["sessions"]
    assert a.captures[0].warnings == []


def test_a_file_cut_short_keeps_what_it_holds(tmp_path: Path) -> None:
    capture = SAMPLES / "09a-wrong-password.pcapng"
    path = tmp_path / "cut.cap"
    write_netmon(path, _frames(capture))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    a = lyncpcap.analyze(path)
    warnings = a.captures[0].warnings
    assert any("frame table is missing" in w for w in warnings)
    assert any(w.startswith("truncated record at end of file (frame ") for w in warnings)
    assert a.captures[0].packets > 50 and a.session_list


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"GMBU\x00\x02\x01\x00", "truncated Network Monitor file header (8 of 128 bytes)"),
        (b"GMBU\x00\x03" + b"\x00" * 122, "unsupported Network Monitor format version 3.0"),
        (b"RTSS\x01\x02" + b"\x00" * 122, "unsupported Network Monitor format version 2.1"),
    ],
)
def test_unreadable_headers_are_one_line_errors(content: bytes, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.cap"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as caught:
        open_capture(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_gzip_compressed_network_monitor_file_is_named(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "c.cap.gz"
    write_netmon(tmp_path / "c.cap", _frames(SAMPLES / "09a-wrong-password.pcapng"))
    path.write_bytes(gzip.compress((tmp_path / "c.cap").read_bytes()))
    with pytest.raises(CaptureError, match="gzip-compressed Network Monitor capture: decompress it first"):
        open_capture(path)


def test_damage_anywhere_is_never_an_internal_error(tmp_path: Path) -> None:
    """Header fields, frame table and records (packets inside NDIS events too) damaged 200 ways: a one-line error, or an analysis
    without an internal error whose JSON can be written."""
    originals = []
    for capture in sample_captures()[:8]:
        path = tmp_path / (capture.stem + ".cap")
        write_netmon(path, _with_records_that_are_not_frames(_frames(capture)))
        originals.append(path.read_bytes())
    for capture in [c for c in sample_captures() if _linktype(c) == 1][:3]:  # packets inside NDIS events
        path = tmp_path / (capture.stem + "-netsh.cap")
        write_netmon(path, _as_netsh_trace(capture))
        originals.append(path.read_bytes())
    rng = random.Random(3)
    for n in range(200):
        out = bytearray(originals[n % len(originals)])
        for _ in range(rng.choice((1, 3, 10))):
            where = rng.random()
            if where < 0.2:
                pos = rng.randrange(6, 64)  # the header's version, media, time and table fields
            elif where < 0.4:
                pos = rng.randrange(len(out) - 64, len(out))  # the frame table
            else:
                pos = rng.randrange(128, len(out))
            if rng.random() < 0.8:
                out[pos] = rng.randrange(256)
            else:
                del out[pos : pos + rng.randrange(1, 40)]
        path = tmp_path / f"d{n}.cap"
        path.write_bytes(bytes(out))
        try:
            a = lyncpcap.analyze(path, jobs=1)
        except CaptureError as exc:
            assert "\n" not in str(exc)
            continue
        assert not any("internal error" in w for w in a.captures[0].warnings), (n, a.captures[0].warnings)
        json.dumps(a.to_json())


def test_the_header_start_time_is_read_as_utc(tmp_path: Path) -> None:
    """Formats before 2.3 only have the start as a SYSTEMTIME: read as UTC, whatever the zone of
    the machine lyncpcap runs on."""
    frames = _frames(SAMPLES / "09a-wrong-password.pcapng")
    path = tmp_path / "v20.cap"
    write_netmon(path, frames, version=(2, 0))
    code = (
        "import time, os; os.environ['TZ'] = 'America/New_York'; time.tzset();"
        "from lyncpcap.read import open_capture;"
        f"c = open_capture({str(path)!r}); print(repr(next(iter(c))[1]))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(shown) == pytest.approx(float(frames[0][0]), abs=1e-6)
    assert FILETIME_EPOCH == (369 * 365 + 89) * 86400 * 10_000_000  # 1601 to 1970, in 100 ns


def test_a_sessions_packets_are_drilled_down_by_wireshark_in_the_netmon_file(tmp_path: Path, tshark: str) -> None:
    """`session.packets()` asks tshark for the steps' frame numbers: in a Network Monitor file with
    its filter frame first, each is the packet of the step (HTTP or SIP), not the one before it."""
    frames = _frames(SAMPLES / "09a-wrong-password.pcapng")
    path = tmp_path / "wrong.cap"
    write_netmon(path, [(frames[0][0], "tcp".encode("utf-16-le"), NETMON_FILTER), *frames])
    a = lyncpcap.analyze(path)
    session = a.session(a.session_list[-1].id)
    steps = [s for s in session.record.steps if s.step != "dns"]
    packets = {int(p.number): p for p in session.packets(connections=False)}
    assert steps and set(packets) >= {s.frame for s in steps}
    for step in steps:
        names = {layer.layer_name for layer in packets[step.frame].layers}
        assert names & {"http", "sip"}, (step.step, step.frame, names)


# -- netsh trace, saved by Network Monitor: packets inside NDIS packet-capture events --------------


def _as_netsh_trace(capture: Path) -> list[NetmonFrame]:
    """The capture's Ethernet frames as `netsh trace start capture=yes` records them and Network
    Monitor saves them: one NDIS packet-capture event (1001) per packet, in an event record."""
    with open_capture(capture) as cap:
        return [(ts, ndis_fragment(ts, bytes(data)), NETMON_NETEVENT) for _n, ts, _lt, data, _w in cap]


@pytest.mark.parametrize("capture", [c for c in sample_captures() if _linktype(c) == 1], ids=lambda p: p.stem)
def test_a_netsh_trace_saved_by_network_monitor_gives_the_same_analysis(capture: Path, tmp_path: Path) -> None:
    netmon = tmp_path / (capture.stem + ".cap")
    write_netmon(netmon, _as_netsh_trace(capture))
    assert _analysis_part(_document(netmon)) == _analysis_part(_document(capture))


def test_ndis_events_match_what_tshark_reads_out_of_them(tmp_path: Path, tshark: str) -> None:
    """tshark's netmon_event and etw.ndis dissectors are the reference for the record layout:
    frame numbers, times and the Ethernet frames inside, with extended data items present and
    events of another provider among them."""
    frames = _as_netsh_trace(SAMPLES / "09a-wrong-password.pcapng")[:20]
    t = frames[5][0]
    other = etw_event(t, b"\x00" * 24, provider="7D44233D-3055-4B9C-BA64-0D47CA40A232", event_id=1)  # WinHTTP
    with_items = ndis_fragment(t, _frames(SAMPLES / "09a-wrong-password.pcapng")[5][1], extended=(b"\x01" * 8, b"\x02" * 4))
    mixed = [*frames[:5], (t, other, NETMON_NETEVENT), (t, with_items, NETMON_NETEVENT), *frames[6:]]
    path = tmp_path / "ndis.cap"
    write_netmon(path, mixed)
    fields = run(tshark, "-n", "-r", path, "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch",
                 "-e", "etw.ndis.fragment_size", "-e", "eth.src", "-e", "ip.src")  # fmt: skip
    rows = [line.split("\t") for line in fields.splitlines()]
    want = {int(n): (f"{float(ts):.6f}", int(size)) for n, ts, size, eth, _ip in rows if eth}
    with open_capture(path) as cap:
        got = {n: (f"{ts:.6f}", len(data)) for n, ts, _lt, data, _w in cap}
        assert cap.frames == len(rows) == 21
    assert got == want and 6 not in got and len(got) == 20


def test_a_packet_in_several_ndis_fragments_and_captured_at_two_layers(tmp_path: Path) -> None:
    """Large packets come in several events (KW_PACKET_START ... KW_PACKET_END), and netsh trace
    records a packet at each layer it passes (another LowerIfIndex): joined per interface pair,
    and the duplicates change nothing."""
    capture = SAMPLES / "02-desktop-external-ntlm.pcapng"
    events: list[NetmonFrame] = []
    with open_capture(capture) as cap:
        for _n, ts, _lt, data, _w in cap:
            frame = bytes(data)
            for lower in (0, 3):
                if len(frame) > 600:
                    cuts = [0, 200, len(frame) // 2, len(frame)]
                    for i in range(3):
                        piece = frame[cuts[i] : cuts[i + 1]]
                        events.append((ts, ndis_fragment(ts, piece, start=i == 0, end=i == 2, lower=lower), NETMON_NETEVENT))
                else:
                    events.append((ts, ndis_fragment(ts, frame, lower=lower), NETMON_NETEVENT))
    path = tmp_path / "fragments.cap"
    write_netmon(path, events)
    a, b = lyncpcap.analyze(path), lyncpcap.analyze(capture)

    def facts(x: lyncpcap.Analysis) -> list[object]:
        return [(s.user, s.outcome, s.auth_protocol, [(st.step, st.url, st.status, st.result) for st in s.steps])
                for s in x.session_list]  # fmt: skip

    assert facts(a) == facts(b) and a.session_list
    assert [f.id for f in a.finding_list] == [f.id for f in b.finding_list]
