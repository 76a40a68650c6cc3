"""Bad input: a clear one-line error (exit 2) or a warning — never a traceback — and whatever is
readable before and after the damage is still analysed."""

from __future__ import annotations

import gzip
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES

import lyncpcap
from lyncpcap.errors import CaptureError

SAMPLE = SAMPLES / "09c-lyncdiscover-nxdomain.pcap"  # classic pcap, Ethernet, two sessions


def records(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(global header, [(record header, data)]) of a little-endian µs pcap."""
    raw = path.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    out = []
    pos = 24
    while pos < len(raw):
        hdr = raw[pos : pos + 16]
        incl = struct.unpack_from("<I", hdr, 8)[0]
        out.append((hdr, raw[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return raw[:24], out


def write(path: Path, head: bytes, recs: list[tuple[bytes, bytes]]) -> Path:
    path.write_bytes(head + b"".join(h + d for h, d in recs))
    return path


def summary(a: lyncpcap.Analysis) -> list[tuple[str, str | None, str, list[str]]]:
    return [(s.client_address, s.user, s.outcome, [st.step for st in s.steps]) for s in a.session_list]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lyncpcap", *args], capture_output=True, text=True, timeout=120)


REFERENCE = summary(lyncpcap.analyze(SAMPLE))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (bytes(random.Random(7).randbytes(4096)), "not a pcap or pcapng"),
        (b"<html><body>not a capture</body></html>", "not a pcap or pcapng"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated"),
    ],
    ids=["empty", "random", "html", "short-header"],
)
def test_unusable_files_give_one_line_and_exit_2(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as exc:
        lyncpcap.analyze(path)
    assert problem in str(exc.value).lower()
    result = cli("analyze", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for target in (tmp_path / "nope.pcap", tmp_path):
        result = cli("analyze", str(target))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_truncated_last_packet_is_a_warning(tmp_path: Path) -> None:
    raw = SAMPLE.read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[:-25])  # the last record loses its tail
    a = lyncpcap.analyze(path)
    assert a.captures[0].warnings, "the damage must be reported"
    assert any("truncat" in w.lower() for w in a.captures[0].warnings)
    assert len(a.session_list) == len(REFERENCE)


def test_snaplen_truncated_packets_are_counted(tmp_path: Path, tshark: str) -> None:
    out = tmp_path / "snap.pcap"
    subprocess.run(["editcap", "-s", "60", str(SAMPLE), str(out)], check=True, capture_output=True)
    a = lyncpcap.analyze(out)  # every payload is cut to a few bytes: no step can be read, but no crash
    assert a.captures[0].packets == len(records(SAMPLE)[1])
    assert a.session_list == []
    assert any("snapshot length" in w for w in a.captures[0].warnings), a.captures[0].warnings


def test_corrupt_headers_in_the_middle_do_not_stop_the_capture(tmp_path: Path) -> None:
    head, recs = records(SAMPLE)
    damaged = list(recs)
    # Break the IP header of a bare ACK (no payload: nothing of the analysis depends on it) and the
    # TCP header length of another; append a few random frames.
    acks = [i for i, (_h, d) in enumerate(recs) if len(d) == 54 or len(d) == 60]
    assert len(acks) >= 2
    i, j = acks[1], acks[-2]
    d = bytearray(recs[i][1])
    d[14] = 0x4F  # IHL 15 words: longer than the packet
    damaged[i] = (recs[i][0], bytes(d))
    d = bytearray(recs[j][1])
    d[14 + 20 + 12] = 0xF0  # TCP data offset 60 bytes in a 20-byte header
    damaged[j] = (recs[j][0], bytes(d))
    rng = random.Random(3)
    for k in (5, 15):
        junk = rng.randbytes(70)
        hdr = recs[k][0][:8] + struct.pack("<II", len(junk), len(junk))
        damaged.insert(k, (hdr, junk))
    a = lyncpcap.analyze(write(tmp_path / "damaged.pcap", head, damaged))
    assert summary(a) == REFERENCE
    assert a.captures[0].packets == len(damaged)
    stats = a.captures[0].stats
    assert sum(v for k, v in stats.items() if k.startswith("skipped.")) >= 2


def test_corrupt_payload_packet_loses_only_its_step(tmp_path: Path) -> None:
    head, recs = records(SAMPLE)
    # the first SIP REGISTER segment: flip its IP version so it cannot be decoded
    idx = next(i for i, (_h, d) in enumerate(recs) if b"REGISTER sip:" in d)
    d = bytearray(recs[idx][1])
    d[14] = 0x00
    damaged = list(recs)
    damaged[idx] = (recs[idx][0], bytes(d))
    a = lyncpcap.analyze(write(tmp_path / "lost.pcap", head, damaged))
    assert len(a.session_list) == len(REFERENCE)
    assert any(s.outcome == "success" for s in a.session_list)  # what came after still counts
    assert a.captures[0].warnings


def test_unknown_link_type_is_a_warning(tmp_path: Path) -> None:
    head, recs = records(SAMPLE)
    head = head[:20] + struct.pack("<I", 147)  # DLT_USER0
    a = lyncpcap.analyze(write(tmp_path / "user0.pcap", head, recs))
    assert a.session_list == []
    assert any("147" in w for w in a.captures[0].warnings)
    result = cli("analyze", str(tmp_path / "user0.pcap"), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["captures"][0]["warnings"]


def test_gzip_and_sniffed_format(tmp_path: Path) -> None:
    gz = tmp_path / "capture.bin"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    a = lyncpcap.analyze(gz)
    assert summary(a) == REFERENCE
    assert a.captures[0].compressed


def test_no_traceback_on_any_damage(tmp_path: Path) -> None:
    """Random byte flips anywhere after the header: the CLI always ends with 0 or 2, never 1."""
    raw = bytearray(SAMPLE.read_bytes())
    rng = random.Random(11)
    for n in range(8):
        mutated = bytearray(raw)
        for _ in range(40):
            pos = rng.randrange(24, len(mutated))
            mutated[pos] = rng.randrange(256)
        path = tmp_path / f"m{n}.pcap"
        path.write_bytes(bytes(mutated))
        result = cli("analyze", str(path), "--format", "json")
        assert result.returncode in (0, 2), result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.pcap"
    path.write_bytes(SAMPLE.read_bytes())
    path.chmod(0)
    result = cli("analyze", str(path))
    assert result.returncode == 2
