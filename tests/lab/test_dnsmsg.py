"""Tests for lyncpcap.lab.dnsmsg: wire format, compression, and tshark's reading of the demo."""

from __future__ import annotations

import struct
from pathlib import Path

import labkit
import pytest
from scapy.layers.dns import DNS

from lyncpcap.lab import dnsmsg


def test_query_wire_format() -> None:
    q = dnsmsg.query(0x1234, "lyncdiscover.contoso.com", "A")
    assert q[:12] == bytes.fromhex("123401000001000000000000")
    assert q[12:] == b"\x0clyncdiscover\x07contoso\x03com\x00\x00\x01\x00\x01"
    assert dnsmsg.query(1, "_sip._tls.contoso.com.", "srv")[-4:] == b"\x00\x21\x00\x01"
    with pytest.raises(ValueError):
        dnsmsg.query(1, "x.contoso.com", "MX")
    with pytest.raises(ValueError):
        dnsmsg.query(1, "a" * 64 + ".com", "A")


def test_response_with_cname_chain_and_compression() -> None:
    q = dnsmsg.query(7, "lyncdiscoverinternal.contoso.com", "A")
    r = dnsmsg.response(
        q,
        answers=[
            ("lyncdiscoverinternal.contoso.com", "CNAME", "lyncweb.contoso.com"),
            ("lyncweb.contoso.com", "A", "10.0.0.10"),
        ],
        ttl=1200,
    )
    qid, flags, an, ns = struct.unpack("!HHxxHH", r[:10])
    assert (qid, flags, an, ns) == (7, 0x8580, 2, 0)  # QR AA RD RA, NOERROR
    # The first owner name is a pointer to the question; "contoso.com" in the CNAME target too.
    assert struct.pack("!H", 0xC00C) in r
    assert r.count(b"\x07contoso\x03com") == 1
    parsed = DNS(r)
    assert parsed.an[0].rdata == b"lyncweb.contoso.com." and parsed.an[0].ttl == 1200
    assert parsed.an[1].rrname == b"lyncweb.contoso.com." and parsed.an[1].rdata == "10.0.0.10"


def test_srv_target_is_not_compressed() -> None:
    q = dnsmsg.query(8, "_sipinternaltls._tcp.contoso.com", "SRV")
    r = dnsmsg.response(
        q, answers=[("_sipinternaltls._tcp.contoso.com", "SRV", "0 0 5061 pool01.contoso.com")]
    )
    assert r.endswith(struct.pack("!HHH", 0, 0, 5061) + dnsmsg.encode_name("pool01.contoso.com"))
    srv = DNS(r).an[0]
    assert (srv.priority, srv.weight, srv.port, srv.target) == (0, 0, 5061, b"pool01.contoso.com.")


def test_nxdomain_carries_the_zone_soa() -> None:
    q = dnsmsg.query(9, "lyncdiscover.contoso.com", "A")
    r = dnsmsg.response(q, rcode="NXDOMAIN", authority_soa="contoso.com")
    parsed = DNS(r)
    assert parsed.rcode == 3 and parsed.ancount == 0 and parsed.nscount == 1
    soa = parsed.ns[0]
    assert (
        soa.rrname == b"contoso.com." and soa.mname == b"dc01.contoso.com." and soa.ttl == soa.minimum == 3600
    )
    full = dnsmsg.response(
        q,
        rcode="nxdomain",
        authority_soa="contoso.com ns1.contoso.com hostmaster.contoso.com 7 900 600 86400 300",
    )
    assert DNS(full).ns[0].serial == 7 and DNS(full).ns[0].ttl == 300
    with pytest.raises(ValueError):
        dnsmsg.response(q, rcode="NOPE")


def test_aaaa_ptr_txt_ns() -> None:
    q = dnsmsg.query(10, "lyncweb.contoso.com", "AAAA")
    r = dnsmsg.response(
        q,
        answers=[
            ("lyncweb.contoso.com", "AAAA", "fd00::10"),
            ("lyncweb.contoso.com", "TXT", "v=lync"),
            ("contoso.com", "NS", "dc01.contoso.com"),
        ],
    )
    parsed = DNS(r)
    assert parsed.an[0].rdata == "fd00::10"
    assert parsed.an[1].rdata == [b"v=lync"]
    assert parsed.an[2].rdata == b"dc01.contoso.com."


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, labkit.Demo]:
    d = labkit.build_demo()
    path = tmp_path_factory.mktemp("dns") / "demo.pcap"
    d.net.write_pcap(str(path))
    return path, d


def test_tshark_reads_the_demo_lookups(demo: tuple[Path, labkit.Demo]) -> None:
    path, d = demo
    rows = labkit.frames_with(
        path,
        "dns",
        [
            "dns.id",
            "dns.flags.response",
            "dns.qry.name",
            "dns.qry.type",
            "dns.flags.rcode",
            "dns.a",
            "dns.aaaa",
            "dns.cname",
            "dns.srv.target",
            "dns.srv.port",
            "dns.soa.mname",
            "ipv6.src",
        ],
    )
    assert len(rows) == 8
    queries, answers = rows[0::2], rows[1::2]
    assert [r["dns.qry.name"][0] for r in queries] == list(d.dns_ids)
    assert [int(r["dns.id"][0], 16) for r in queries] == list(d.dns_ids.values())
    assert [r["dns.qry.type"][0] for r in queries] == ["1", "28", "33", "1"]
    assert [r["dns.flags.rcode"][0] for r in answers] == ["0", "0", "0", "3"]
    assert answers[0]["dns.cname"] == ["lyncweb.contoso.com"] and answers[0]["dns.a"] == ["10.0.0.10"]
    assert answers[1]["dns.aaaa"] == ["fd00::10"] and "ipv6.src" in answers[1]
    assert answers[2]["dns.srv.target"] == ["pool01.contoso.com"] and answers[2]["dns.srv.port"] == ["5061"]
    assert answers[3]["dns.soa.mname"] == ["dc01.contoso.com"]
