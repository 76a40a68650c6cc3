"""Bad input: a clear one-line error (exit 2) or a warning — never a traceback — and whatever is
readable before and after the damage is still analysed."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import SAMPLES, analysis_document

import lyncpcap
from lyncpcap.errors import CaptureError
from lyncpcap.read import open_capture

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
        (bytes(random.Random(7).randbytes(4096)), "not a pcap, pcapng or network monitor file"),
        (b"<html><body>not a capture</body></html>", "not a pcap, pcapng or network monitor file"),
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


def test_windows_traces_that_are_not_captures_say_how_to_convert_them(tmp_path: Path) -> None:
    """`netsh trace` and pktmon write .etl files, Message Analyzer .matp packages (a zip): the
    one-line error says what the file is and how to get a capture out of it."""
    etl = tmp_path / "NetTrace.etl"
    etl.write_bytes(struct.pack("<IIII", 0x10000, 0x48, 0x48, 0) + bytes(random.Random(3).randbytes(4000)))
    matp = tmp_path / "signin.matp"
    with zipfile.ZipFile(matp, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr("Messages/0.bin", b"\x00" * 64)
    for path, hint in ((etl, "pktmon etl2pcap"), (matp, "save it from Message Analyzer as a Network Monitor .cap")):
        result = cli("analyze", str(path))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert str(path) in line and hint in line, line
    # a folder handed to batch: the traces are listed as unreadable, with the same advice
    shutil.copy(SAMPLE, tmp_path / SAMPLE.name)
    result = cli("batch", str(tmp_path), "--output", str(tmp_path / "reports"))
    assert result.returncode == 0, result.stderr
    index = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "pktmon etl2pcap" in index and "Message Analyzer" in index


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


def _epb_offsets(raw: bytes) -> list[int]:
    """Where each enhanced packet block of a little-endian pcapng starts."""
    out, off = [], 0
    while off < len(raw):
        btype, blen = struct.unpack_from("<II", raw, off)
        if btype == 6:
            out.append(off)
        off += blen
    return out


def test_a_packet_stamped_after_2106_is_skipped_and_reported(tmp_path: Path) -> None:
    """A pcapng timestamp's high word damaged to 0xFFFFFFFF puts a packet in the year 586,524: it
    is skipped and counted, and every report (JSON, DataFrames, text) is still written."""
    original = SAMPLES / "01-desktop-internal-kerberos.pcapng"
    raw = bytearray(original.read_bytes())
    offsets = _epb_offsets(bytes(raw))
    # a bare ACK in the middle of the sign-in: nothing of the analysis depends on it
    bare = [o for o in offsets if struct.unpack_from("<I", raw, o + 20)[0] in (54, 66)]
    assert len(bare) > 4
    struct.pack_into("<I", raw, bare[len(bare) // 2] + 12, 0xFFFFFFFF)
    path = tmp_path / "stamped.pcapng"
    path.write_bytes(bytes(raw))
    reference = lyncpcap.analyze(original)
    a = lyncpcap.analyze(path)
    assert summary(a) == summary(reference)
    assert a.captures[0].packets == reference.captures[0].packets
    assert a.captures[0].stats["skipped.bad_time"] == 1
    assert "1 packet skipped: timestamp before 1970 or after 2106 (a damaged record)" in a.captures[0].warnings
    assert len(a.sessions) == len(reference.sessions) and len(a.steps) == len(reference.steps)
    result = cli("analyze", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [s["start"] for s in doc["sessions"]] == [s["start"] for s in reference.to_json()["sessions"]]


def test_an_archive_entry_stamped_after_2106_is_named(tmp_path: Path) -> None:
    """A damaged entry costs only itself, named in a warning; a HAR of nothing but damaged entries
    is a one-line error naming the first."""
    har = json.loads((SAMPLES / "05-lwa-domain-user-soap-har.har").read_text(encoding="utf-8-sig"))
    har["log"]["entries"][2]["startedDateTime"] = "9999-12-31T23:59:59.000Z"
    path = tmp_path / "future.har"
    path.write_text(json.dumps(har), encoding="utf-8")
    a = lyncpcap.analyze(path)
    (warning,) = [w for w in a.captures[0].warnings if "damaged HAR" in w]
    assert warning.startswith("1 damaged HAR entry skipped (first: HAR entry 3") and "after 2106" in warning
    assert len(a.step_list) == len(lyncpcap.analyze(SAMPLES / "05-lwa-domain-user-soap-har.har").step_list) - 1
    for entry in har["log"]["entries"]:
        entry["startedDateTime"] = "9999-12-31T23:59:59.000Z"
    path.write_text(json.dumps(har), encoding="utf-8")
    result = cli("analyze", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "HAR entry 1" in lines[0] and "after 2106" in lines[0], result.stderr


def test_xml_in_an_encoding_python_lacks_loses_only_its_documents(tmp_path: Path) -> None:
    """A SOAP body declaring an encoding Python cannot read is a bad document, not the end of the
    capture (it used to stop the whole analysis with a LookupError)."""
    original = SAMPLES / "07-passive-adfs-2fa.pcap"
    raw = original.read_bytes()
    assert raw.count(b'encoding="utf-8"') >= 2
    damaged = tmp_path / "utz.pcap"
    damaged.write_bytes(raw.replace(b'encoding="utf-8"', b'encoding="utz-8"'))  # same length: TCP intact
    before, after = lyncpcap.analyze(original), lyncpcap.analyze(damaged)
    assert [s.client_address for s in after.session_list] == [s.client_address for s in before.session_list]
    assert sum(len(s.steps) for s in after.session_list) == sum(len(s.steps) for s in before.session_list)
    result = cli("analyze", str(damaged), "--format", "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr and "internal error" not in result.stderr


# -- a bug of ours in one decoder: that connection or datagram is lost, not the capture --------------

SPRAY = SAMPLES / "10-password-spray.pcapng"  # 14 sessions of web-ticket requests, one connection each


def _http_bug(monkeypatch: pytest.MonkeyPatch, frame: int) -> list[int]:
    """Make the HTTP classifier fail, as a bug would, on the request completed in `frame`; the
    list returned gets the frame that completed its answer (where the exchange is classified)."""
    from lyncpcap.steps.http import HttpClassifier

    original = HttpClassifier.on_exchange
    answered: list[int] = []

    def buggy(self: HttpClassifier, state: object, ex: object) -> None:
        if ex.request.frame == frame:  # type: ignore[attr-defined]
            answered.append(ex.response.frame)  # type: ignore[attr-defined]
            raise TypeError("Authorization: NTLM TlRMTVNTUAADAAAAsecret")  # a message that quotes the packet
        original(self, state, ex)  # type: ignore[arg-type]

    monkeypatch.setattr(HttpClassifier, "on_exchange", buggy)
    return answered


def _steps(a: lyncpcap.Analysis) -> list[tuple[str, int]]:
    return sorted((st.step, st.frame) for s in a.session_list for st in s.steps)


def test_decoder_bug_loses_only_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = lyncpcap.analyze(SPRAY)
    assert ("webticket", 15) in _steps(reference) and not reference.captures[0].warnings
    answered = _http_bug(monkeypatch, 15)
    a = lyncpcap.analyze(SPRAY, jobs=1)
    assert _steps(a) == [s for s in _steps(reference) if s != ("webticket", 15)]
    [warning] = a.captures[0].warnings
    assert warning.startswith("1 connection or datagram stopped being decoded at an internal error")
    assert f"first in frame {answered[0]}: TypeError at http.py:" in warning and "report it with the capture" in warning
    document = json.dumps(a.to_json())
    assert "TlRMTVNTUAADAAAAsecret" not in document and "Authorization" not in warning
    # workers contain it the same way, and their counts add up to the same document
    assert analysis_document(lyncpcap.analyze(SPRAY, jobs=2)) == analysis_document(a)


def test_decoder_bug_in_a_datagram_loses_only_that_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    from lyncpcap.steps.dns import DnsClassifier

    capture = SAMPLES / "01-desktop-internal-kerberos.pcapng"
    reference = _steps(lyncpcap.analyze(capture))
    dns_frames = [frame for step, frame in reference if step == "dns"]
    original = DnsClassifier.on_datagram

    def buggy(self: DnsClassifier, data: bytes, **kw: object) -> None:
        if kw["frame"] == dns_frames[0]:
            raise IndexError("bug")
        original(self, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(DnsClassifier, "on_datagram", buggy)
    a = lyncpcap.analyze(capture)
    # the query's answer was that datagram's partner: the step is gone, nothing else is
    assert [s for s in reference if s not in _steps(a)] == [("dns", dns_frames[0])]
    assert any(f"first in frame {dns_frames[0]}: IndexError at " in w for w in a.captures[0].warnings)


def test_decoder_bug_in_an_archive_loses_only_that_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    har = SAMPLES / "08-ucwa-mobile-oauth-har.har"
    reference = _steps(lyncpcap.analyze(har))
    assert ("oauth", 3) in reference
    _http_bug(monkeypatch, 3)  # an archive entry's number is its frame
    a = lyncpcap.analyze(har)
    assert _steps(a) == [s for s in reference if s != ("oauth", 3)]
    [warning] = a.captures[0].warnings
    assert warning.startswith("1 archive entry stopped being decoded at an internal error (first in frame 3: TypeError")


def test_internal_errors_of_several_workers_add_up_to_one_note() -> None:
    from lyncpcap.engine import InternalErrors

    def raised(exc: Exception) -> Exception:
        try:
            raise exc
        except Exception as caught:
            return caught

    a, b = InternalErrors(), InternalErrors()
    a.add(40, raised(KeyError("x")))
    b.add(12, raised(ValueError("y")))
    b.add(90, raised(KeyError("z")))
    a.merge(b)
    assert (a.count, a.first) == (3, (12, "ValueError"))  # raised in this test: no line of lyncpcap's
    [note] = a.note()
    assert note.startswith("3 connections or datagrams stopped being decoded") and "(first in frame 12: ValueError)" in note
    assert InternalErrors().note() == []


def test_an_error_downstream_of_the_decoders_still_stops_the_analysis() -> None:
    """A failing consumer of steps (a closed output, a worker's pipe) is not a decoder's bug."""
    from lyncpcap.engine import analyse_file

    def refuse(step: object) -> None:
        raise BrokenPipeError("the reader went away")

    with pytest.raises(BrokenPipeError):
        analyse_file(SPRAY, on_step=refuse)


def test_unknown_link_type_is_a_warning(tmp_path: Path) -> None:
    head, recs = records(SAMPLE)
    head = head[:20] + struct.pack("<I", 147)  # DLT_USER0
    a = lyncpcap.analyze(write(tmp_path / "user0.pcap", head, recs))
    assert a.session_list == []
    assert any("147" in w for w in a.captures[0].warnings)
    result = cli("analyze", str(tmp_path / "user0.pcap"), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["captures"][0]["warnings"]


def test_windows_event_records_beside_the_packets_are_named_as_such(tmp_path: Path) -> None:
    """Wireshark opens an .etl trace as Ethernet frames (the NDIS packet capture's) and ETW records
    (link type 290, every other provider's events): the events are not 'packets of an unknown link
    type', and the packets are analysed as usual."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    with open_capture(SAMPLE) as cap:
        packets = [(ts, bytes(data)) for _n, ts, _lt, data, _w in cap]
    events = [(ts + 1e-6, struct.pack("<HHHHII", 0, 0, 0x40, 0, 4, 4) + bytes(80)) for ts, _data in packets[::7]]
    frames = sorted([(ts, 0, data) for ts, data in packets] + [(ts, 1, data) for ts, data in events])
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out += [block(1, struct.pack("<HHI", linktype, 0, 0)) for linktype in (1, 290)]
    for ts, interface, data in frames:
        units = round(ts * 1e6)
        out.append(block(6, struct.pack("<IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(data), len(data)) + data))
    path = tmp_path / "from-etl.pcapng"
    path.write_bytes(b"".join(out))
    a = lyncpcap.analyze(path)
    assert summary(a) == REFERENCE
    assert a.captures[0].warnings == [
        f"{len(events)} packets skipped: Windows event (ETW) records, not packets (an .etl trace opened in Wireshark)"
    ]


def test_gzip_and_sniffed_format(tmp_path: Path) -> None:
    gz = tmp_path / "capture.bin"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    a = lyncpcap.analyze(gz)
    assert summary(a) == REFERENCE
    assert a.captures[0].compressed


def _damaged(raw: bytes, rng: random.Random) -> bytes:
    """Bytes changed, cut out or put in, anywhere after the file header."""
    out = bytearray(raw)
    for _ in range(rng.choice((1, 3, 10, 40))):
        pos = rng.randrange(24, len(out))
        how = rng.random()
        if how < 0.7:
            out[pos] = rng.randrange(256)
        elif how < 0.85:
            del out[pos : pos + rng.randrange(1, 40)]
        else:
            out[pos:pos] = rng.randbytes(rng.randrange(1, 40))
    return bytes(out)


def test_no_traceback_on_any_damage(tmp_path: Path) -> None:
    """Random damage anywhere after the header: the CLI always ends with 0 or 2, never 1."""
    raw = SAMPLE.read_bytes()
    rng = random.Random(11)
    for n in range(6):
        path = tmp_path / f"m{n}.pcap"
        path.write_bytes(_damaged(raw, rng))
        result = cli("analyze", str(path), "--format", "json")
        assert result.returncode in (0, 2), result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_damaged_inputs_of_every_kind_meet_no_internal_error(tmp_path: Path) -> None:
    """Every sample (captures, SAZ, HAR) damaged many ways: a one-line CaptureError, or an
    analysis in which no decoder met an exception it did not expect (which would be contained,
    and named in a warning), and whose every report can be made.  This is how the XML encoding,
    zip damage and damaged-timestamp bugs were found."""
    inputs = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng", ".saz", ".har"))
    rng = random.Random(5)
    for n in range(400):
        original = inputs[n % len(inputs)]
        path = tmp_path / f"{n}{original.suffix}"
        path.write_bytes(_damaged(original.read_bytes(), rng))
        try:
            a = lyncpcap.analyze(path, jobs=1, full=n % 5 == 0)
        except CaptureError as exc:
            assert "\n" not in str(exc)
            continue
        warnings = a.captures[0].warnings
        assert not any("internal error" in w for w in warnings), (original.name, n, warnings)
        # and every report can be made of what was read (a damaged timestamp once broke them)
        json.dumps(a.to_json())
        if n % 4 == 0:
            assert len(a.sessions) == len(a.session_list)
            assert len(a.steps) == len(a.step_list) and len(a.auth) == len(a.auth_list)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.pcap"
    path.write_bytes(SAMPLE.read_bytes())
    path.chmod(0)
    result = cli("analyze", str(path))
    assert result.returncode == 2
