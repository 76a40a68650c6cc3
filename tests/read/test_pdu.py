"""Wireshark exported-PDU frames (link type 252): the tags, and exported-PDU captures read directly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES, truth_path
from truth import differences, load

import lyncpcap
from lyncpcap.errors import MalformedError
from lyncpcap.flows.pdus import PduStreams
from lyncpcap.lab import dnsmsg
from lyncpcap.lab.pcapwriter import write_pcapng
from lyncpcap.read import open_capture
from lyncpcap.read.pdu import (
    LINKTYPE_WIRESHARK_UPPER_PDU,
    PORT_TCP,
    PORT_UDP,
    ExportedPdu,
    build_exported_pdu,
    parse_exported_pdu,
)

EXTERNAL_TLS = SAMPLES / "02-desktop-external-ntlm-tls.pcapng"
EXTERNAL_KEYLOG = SAMPLES / "02-desktop-external-ntlm-tls.keylog"


def export(tshark: str, capture: Path, keylog: Path, out: Path, *options: str) -> Path:
    """What Wireshark's File › Export PDUs to File… (OSI layer 7) writes."""
    subprocess.run([tshark, "-n", "-r", str(capture), "-o", f"tls.keylog_file:{keylog}", *options,
                    "-U", "OSI layer 7", "-w", str(out)], check=True, capture_output=True)
    return out


# -- tags ------------------------------------------------------------------------------------------

# A frame as tshark 4.0 writes it: dissector name padded to 4 bytes (the length counts the padding),
# IPv4 addresses, port type TCP, ports, original frame number, end tag, payload.
TSHARK_FRAME = bytes.fromhex(
    "000c0010" + b"http-over-tls\x00\x00\x00".hex()
    + "00140004" + "0a000105" + "00150004" + "0a000015"
    + "00180004" + "00000002" + "00190004" + "0000d785" + "001a0004" + "000001bb"
    + "001e0004" + "00000008" + "00000000"
) + b"GET / HTTP/1.1\r\n\r\n"


def test_tags_of_a_tshark_frame() -> None:
    pdu = parse_exported_pdu(TSHARK_FRAME)
    assert pdu == ExportedPdu(
        payload=b"GET / HTTP/1.1\r\n\r\n", protocol="http-over-tls", src="10.0.1.5", dst="10.0.0.21",
        port_type=PORT_TCP, src_port=55173, dst_port=443, orig_frame=8,
    )
    assert pdu.over_tls


@pytest.mark.parametrize(
    "kw",
    [
        dict(protocol="sip", src="fd00:c0:5::21", dst="2001:db8::7", port_type=PORT_UDP, src_port=5060, dst_port=5060),
        dict(protocol="http_tls", src="10.0.0.1", dst="10.0.0.2", port_type=PORT_TCP, src_port=1, dst_port=443, orig_frame=70000),
        dict(),
    ],
)
def test_build_and_parse_round_trip(kw: dict[str, object]) -> None:
    frame = build_exported_pdu(b"payload", **kw)  # type: ignore[arg-type]
    pdu = parse_exported_pdu(frame)
    assert pdu.payload == b"payload"
    for key, value in kw.items():
        assert getattr(pdu, key) == value


def test_heuristic_name_counts_as_protocol() -> None:
    frame = bytes.fromhex("000d0008") + b"http_tls" + bytes(4) + b"x"
    pdu = parse_exported_pdu(frame)
    assert pdu.protocol == "http_tls" and pdu.over_tls and pdu.payload == b"x"


@pytest.mark.parametrize(
    "frame",
    [
        b"",  # no tags at all
        bytes.fromhex("000c0010") + b"http",  # value runs past the frame
        bytes.fromhex("00140002") + b"\x0a\x00" + bytes(4),  # IPv4 address of 2 bytes
        bytes.fromhex("00190004") + bytes(4),  # no end tag
    ],
)
def test_damaged_tags_are_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_exported_pdu(frame)


# -- exported-PDU captures read directly -----------------------------------------------------------


def test_tshark_export_reads_as_its_pdus(tshark: str, tmp_path: Path) -> None:
    out = export(tshark, EXTERNAL_TLS, EXTERNAL_KEYLOG, tmp_path / "pdus.pcapng")
    with open_capture(out) as cap:
        frames = list(cap)
        assert cap.linktypes == {LINKTYPE_WIRESHARK_UPPER_PDU}
    first = parse_exported_pdu(frames[0][3])
    assert (first.src, first.src_port, first.dst, first.dst_port, first.orig_frame) == ("10.0.1.5", 55173, "10.0.0.21", 443, 8)
    assert first.payload.startswith(b"GET /?sipuri=carol@contoso.com HTTP/1.1\r\n")


def test_exported_pdu_capture_gives_the_twin_sessions(tshark: str, tmp_path: Path) -> None:
    out = export(tshark, EXTERNAL_TLS, EXTERNAL_KEYLOG, tmp_path / "pdus.pcapng",
                 "-o", "tls.desegment_ssl_application_data:FALSE")
    a = lyncpcap.analyze(out)
    assert not differences(a, load(truth_path(EXTERNAL_TLS)))
    assert a.captures[0].decrypted and a.captures[0].warnings == []
    # frames are the original capture's, transport says the bytes were TLS-protected
    b = lyncpcap.analyze(EXTERNAL_TLS, keylog=EXTERNAL_KEYLOG)
    assert [(s.frame, s.step, s.transport) for s in a.step_list] == [(s.frame, s.step, s.transport) for s in b.step_list]


def test_wireshark_default_export_repeats_are_read_once(tshark: str, corpus: Path, tmp_path: Path) -> None:
    """With TLS desegmentation on (Wireshark's default), a PDU HTTP found incomplete is exported
    again whole once the rest arrived; it must not be read twice."""
    out = export(tshark, corpus / "zeek/tls-1.2-stream-keylog.pcap", corpus / "zeek/tls-1.2-stream-keylog.keylog",
                 tmp_path / "default.pcapng")
    a = lyncpcap.analyze(out)
    assert [s.frame for s in a.step_list] == [14, 126, 131, 154, 169, 174, 179, 183, 188, 194, 198, 209, 214, 218, 223, 227]
    assert [s.status for s in a.step_list].count(200) == 14
    assert any("repeats of earlier PDUs" in w for w in a.captures[0].warnings)


def test_udp_pdus_reach_the_datagram_decoders(tmp_path: Path) -> None:
    query = dnsmsg.query(0x1234, "lyncdiscover.contoso.com", "A")
    answer = dnsmsg.response(query, answers=[("lyncdiscover.contoso.com", "A", "203.0.113.10")])
    frames = [
        (1392883925.1, build_exported_pdu(query, protocol="dns", src="10.0.10.21", dst="10.0.0.5", port_type=PORT_UDP,
                                          src_port=50000, dst_port=53, orig_frame=41)),
        (1392883925.2, build_exported_pdu(answer, protocol="dns", src="10.0.0.5", dst="10.0.10.21", port_type=PORT_UDP,
                                          src_port=53, dst_port=50000, orig_frame=42)),
        (1392883925.3, b"\x00\x0c\x00\x08"),  # damaged: counted, not fatal
    ]
    path = tmp_path / "dns-pdus.pcapng"
    write_pcapng(path, frames, LINKTYPE_WIRESHARK_UPPER_PDU)
    a = lyncpcap.analyze(path)
    [step] = a.step_list
    assert (step.step, step.frame, step.url, step.transport) == ("dns", 41, "lyncdiscover.contoso.com", "udp")
    assert a.captures[0].packets == 3
    assert a.captures[0].warnings == ["1 exported PDU frame(s) skipped: damaged exported-PDU header"]


@pytest.mark.parametrize(
    ("pdus", "stream"),
    [
        # an incomplete message, exported again whole with the next record
        ([b"GET /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nab", b"GET /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"],
         b"GET /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"),
        # a record ending with the start of the next message: that start comes again
        ([b"GET /a HTTP/1.1\r\n\r\nGET /b HT", b"GET /b HTTP/1.1\r\n\r\n"], b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
        # the same request twice (polling) is two requests, not a repeat
        ([b"GET /poll HTTP/1.1\r\n\r\n", b"GET /poll HTTP/1.1\r\n\r\n"], b"GET /poll HTTP/1.1\r\n\r\n" * 2),
        # SIP keep-alives: too short to be taken for a repeat
        ([b"REGISTER sip:a SIP/2.0\r\n\r\n", b"\r\n\r\n"], b"REGISTER sip:a SIP/2.0\r\n\r\n\r\n\r\n"),
    ],
    ids=["whole-again", "leftover", "polling", "keepalive"],
)
def test_redelivered_bytes_are_read_once(pdus: list[bytes], stream: bytes) -> None:
    got = bytearray()

    class Sink:
        done = False

        def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
            got.extend(data)

        def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
            raise AssertionError("no gap")

        def on_close(self, ts: float, frame: int, how: str) -> None:
            pass

    streams = PduStreams(lambda conn, direction, first, *, transport="tcp": Sink(), redelivery=True)
    for n, data in enumerate(pdus, 1):
        streams.tcp(n, float(n), "10.0.0.9", 50000, "10.0.0.21", 443, data, transport="tls")
    assert bytes(got) == stream
