"""DNS decoding: corpus DNS frames against expected.json, scapy-built messages, hostile names, TCP framing."""

from __future__ import annotations

import struct

import pytest
from proto_corpus import expected, needs_corpus, tshark_fields
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSRV

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import dns
from lyncpcap.protocols.dns import DnsTcpFramer

DNS_FILES = ["suricata-verify/dns-srv.pcap", "arkime/dns-wiresharkrepo.pcap", "zeek/erspan.pcap"]


@needs_corpus
@pytest.mark.parametrize("capture", DNS_FILES)
def test_every_dns_frame_matches_tshark(capture: str) -> None:
    rows = {int(f): p for f, p in tshark_fields(capture, "dns", ("frame.number", "udp.payload"))}
    wanted = expected()[capture]["dns"]
    assert sorted(rows) == sorted(e["frame"] for e in wanted)
    for entry in wanted:
        message = dns.parse(bytes.fromhex(rows[entry["frame"]]))
        records = message.answers + message.authority + message.additional
        assert message.is_response is entry["response"]
        assert [q[0] for q in message.questions] == entry["qname"]
        assert [q[1] for q in message.questions] == entry["qtype"]
        assert [r.srv_target for r in records if r.rtype == dns.TYPE_SRV] == entry["srv_target"]
        assert [r.srv_port for r in records if r.rtype == dns.TYPE_SRV] == entry["srv_port"]
        assert [r.value for r in records if r.rtype == dns.TYPE_A] == entry["a"]


@needs_corpus
def test_srv_answer_details() -> None:
    ((_frame, payload),) = tshark_fields(
        "suricata-verify/dns-srv.pcap", "dns.flags.response == 1", ("frame.number", "udp.payload")
    )
    message = dns.parse(bytes.fromhex(payload))
    assert message.rcode_name == "NOERROR" and not message.truncated and message.opcode == 0
    assert [r.value for r in message.answers] == [
        "20 1 5060 sip-anycast-2.voice.google.com",
        "10 1 5060 sip-anycast-1.voice.google.com",
    ]
    assert message.additional[-1].type_name == "OPT"


@needs_corpus
def test_ad_srv_lookups_fail_with_nxdomain() -> None:
    rows = {
        f: p
        for f, p in tshark_fields("arkime/dns-wiresharkrepo.pcap", "dns", ("frame.number", "udp.payload"))
    }
    for frame in ("30", "32", "34"):
        message = dns.parse(bytes.fromhex(rows[frame]))
        assert message.questions[0][0].startswith("_ldap._tcp.") and message.questions[0][1] == 33
        assert message.rcode == 3 and message.rcode_name == "NXDOMAIN"
    mx = dns.parse(bytes.fromhex(rows["4"]))
    assert mx.answers[0].value == "40 smtp4.google.com"
    txt = dns.parse(bytes.fromhex(rows["2"]))
    assert txt.answers[0].value == "v=spf1 ptr ?all"


@needs_corpus
def test_erspan_soa_in_authority() -> None:
    rows = {f: p for f, p in tshark_fields("zeek/erspan.pcap", "dns", ("frame.number", "udp.payload"))}
    message = dns.parse(bytes.fromhex(rows["133"]))
    assert message.rcode_name == "NXDOMAIN"
    assert message.authority[0].value == "tfdsp.sp.local hostmaster.sp.local 57 900 600 86400 3600"


# -- scapy-built ----------------------------------------------------------------------------------


def test_scapy_built_lync_discovery_response() -> None:
    packet = DNS(
        id=0x1234,
        qr=1,
        aa=1,
        rd=1,
        ra=1,
        qd=[DNSQR(qname="_sipinternaltls._tcp.contoso.com", qtype="SRV")],
        an=[
            DNSRRSRV(
                rrname="_sipinternaltls._tcp.contoso.com",
                ttl=3600,
                priority=0,
                weight=0,
                port=5061,
                target="pool01.contoso.com",
            ),
        ],
        ar=[
            DNSRR(rrname="pool01.contoso.com", type="A", ttl=300, rdata="192.0.2.10"),
            DNSRR(rrname="pool01.contoso.com", type="AAAA", ttl=300, rdata="2001:db8::10"),
            DNSRR(rrname="lyncdiscover.contoso.com", type="CNAME", ttl=300, rdata="proxy.contoso.com"),
            DNSRR(rrname="contoso.com", type="TXT", ttl=300, rdata=[b"v=spf1 ", b"-all"]),
        ],
    )
    for raw in (bytes(packet), bytes(packet.compress())):
        message = dns.parse(raw)
        assert (message.id, message.is_response, message.rcode_name) == (0x1234, True, "NOERROR")
        assert message.questions == (("_sipinternaltls._tcp.contoso.com", 33),)
        (srv,) = message.answers
        assert (srv.srv_port, srv.srv_target, srv.ttl) == (5061, "pool01.contoso.com", 3600)
        assert srv.value == "0 0 5061 pool01.contoso.com"
        assert [r.value for r in message.additional] == [
            "192.0.2.10",
            "2001:db8::10",
            "proxy.contoso.com",
            "v=spf1 -all",
        ]


def test_scapy_built_nxdomain_query_flags() -> None:
    raw = bytes(
        DNS(id=7, qr=1, rcode=3, tc=1, opcode=0, qd=[DNSQR(qname="lyncdiscover.contoso.com", qtype="A")])
    )
    message = dns.parse(raw)
    assert (message.rcode, message.rcode_name, message.truncated) == (3, "NXDOMAIN", True)
    assert message.questions == (("lyncdiscover.contoso.com", 1),)
    query = dns.parse(bytes(DNS(id=8, qd=[DNSQR(qname=".", qtype="NS")])))
    assert query.questions == ((".", 2),) and not query.is_response


# -- hand-made hostile messages -------------------------------------------------------------------


def _header(qd: int = 1, an: int = 0, flags: int = 0x8180) -> bytes:
    return struct.pack("!HHHHHH", 1, flags, qd, an, 0, 0)


def test_compression_loop_is_malformed() -> None:
    loop = _header() + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # points at itself
    with pytest.raises(MalformedError):
        dns.parse(loop)
    forward = _header() + b"\xc0\x12" + b"\x00\x01\x00\x01" + b"\x03abc\x00"
    with pytest.raises(MalformedError):
        dns.parse(forward)


def test_pointer_chains_are_followed() -> None:
    body = b"\x07contoso\x03com\x00" + b"\x00\x01\x00\x01"  # q1 at 12
    body += b"\x04pool\xc0\x0c" + b"\x00\x01\x00\x01"  # q2 at 29 → 12
    body += b"\x02fe\xc0\x1d" + b"\x00\x01\x00\x01"  # q3 → 29 → 12
    message = dns.parse(_header(qd=3) + body)
    assert [q[0] for q in message.questions] == ["contoso.com", "pool.contoso.com", "fe.pool.contoso.com"]


def test_name_length_and_label_limits() -> None:
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 octets
    with pytest.raises(MalformedError):
        dns.parse(_header() + long_name + b"\x00\x01\x00\x01")
    with pytest.raises(MalformedError):
        dns.parse(_header() + b"\x40abc\x00\x00\x01\x00\x01")  # extended label type
    odd = dns.parse(_header() + b"\x03a.b\x04c d\\\x00\x00\x01\x00\x01")
    assert odd.questions[0][0] == "a\\046b.c\\032d\\092"


def test_bad_rdata_lengths() -> None:
    question = b"\x01a\x00\x00\x01\x00\x01"
    bad_a = _header(an=1) + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x03\x01\x02\x03"
    with pytest.raises(MalformedError):
        dns.parse(bad_a)
    overlong = _header(an=1) + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x09\x01\x02\x03\x04"
    with pytest.raises(MalformedError):
        dns.parse(overlong)
    cname_mismatch = (
        _header(an=1) + question + b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x05\xc0\x0c\x00\x00\x00"
    )
    with pytest.raises(MalformedError):
        dns.parse(cname_mismatch)


def test_impossible_counts() -> None:
    with pytest.raises(MalformedError):
        dns.parse(struct.pack("!HHHHHH", 1, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF))
    with pytest.raises(MalformedError):
        dns.parse(b"\x00" * 11)


def test_edns_extended_rcode() -> None:
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x01000000, 0)  # EXTENDED-RCODE 1 → 16
    message = dns.parse(struct.pack("!HHHHHH", 9, 0x8100, 0, 0, 0, 1) + opt)
    assert (message.rcode, message.rcode_name) == (16, "BADVERS")


def test_tcp_framer() -> None:
    messages = [bytes(DNS(id=i, qd=[DNSQR(qname=f"host{i}.contoso.com")])) for i in range(3)]
    stream = b"".join(struct.pack("!H", len(m)) + m for m in messages)
    for size in (1, 5, len(stream)):
        framer = DnsTcpFramer()
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += framer.feed(stream[i : i + size])
        assert out == messages and framer.pending == 0
    framer = DnsTcpFramer()
    assert framer.feed(b"\x00\x03abc" + stream) == []
    assert framer.malformed == 1 and framer.feed(stream) == []
    framer.reset()
    assert framer.feed(stream) == messages
