"""The demo network end to end: tshark reads every file format cleanly, with valid checksums,
and sees the same conversations in each; with TLS added, a pcapng DSB decrypts it."""

from __future__ import annotations

from pathlib import Path

import labkit
import pytest

from lyncpcap.lab import tlssim


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("demo")
    demo = labkit.build_demo()
    files = {
        "pcap": folder / "demo.pcap",
        "pcap-ns": folder / "demo-ns.pcap",
        "pcap-be": folder / "demo-be.pcap",
        "pcapng": folder / "demo.pcapng",
    }
    demo.net.write_pcap(str(files["pcap"]))
    demo.net.write_pcap(str(files["pcap-ns"]), nanosecond=True)
    demo.net.write_pcap(str(files["pcap-be"]), big_endian=True, nanosecond=True)
    demo.net.write_pcapng(str(files["pcapng"]), comment="lyncpcap lab demo")
    return files


def test_demo_has_no_warnings_and_valid_checksums(demo_files: dict[str, Path]) -> None:
    path = demo_files["pcap"]
    assert labkit.problems(path) == {}
    rows = labkit.tshark_json(
        path,
        ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status"],
        prefs=labkit.CHECKSUM_PREFS,
    )
    statuses = {s for r in rows for k, v in r.items() if k.endswith("checksum.status") for s in v}
    assert statuses == {"1"}  # Good
    tcp = labkit.tshark_json(path, ["tcp.analysis.flags"], display_filter="tcp.analysis.flags")
    assert tcp == []  # no retransmissions, dup ACKs, lost or out-of-order segments


def test_demo_http(demo_files: dict[str, Path]) -> None:
    rows = labkit.frames_with(
        demo_files["pcap"],
        "http",
        [
            "http.request.method",
            "http.request.uri",
            "http.response.code",
            "http.content_length",
            "ipv6.src",
            "tcp.stream",
        ],
    )
    summary = [
        (
            (r.get("http.request.method") or r["http.response.code"])[0],
            r.get("http.content_length", [""])[0],
            "ipv6.src" in r,
        )
        for r in rows
    ]
    assert summary == [
        ("POST", "5000", False),
        ("200", "5000", False),
        ("GET", "", False),
        ("401", "0", False),
        ("GET", "", False),
        ("401", "0", False),
        ("GET", "", False),
        ("200", "5", False),
        ("GET", "", False),
        ("200", "5", False),
        ("GET", "", True),
        ("200", "3607", True),
    ]
    segments = labkit.frames_with(demo_files["pcap"], "tcp.stream == 2 && tcp.len > 0", ["tcp.len", "ip.src"])
    assert [r["tcp.len"][0] for r in segments if r["ip.src"] == ["10.0.1.20"]][:3] == ["1460"] * 3


def test_every_format_shows_the_same_capture(demo_files: dict[str, Path]) -> None:
    fields = [
        "frame.len",
        "ip.src",
        "ipv6.src",
        "tcp.seq",
        "tcp.ack",
        "udp.length",
        "dns.qry.name",
        "kerberos.msg_type",
        "ntlmssp.messagetype",
        "http.request.method",
    ]
    reference = labkit.tshark_json(demo_files["pcap"], fields)
    for name in ("pcap-ns", "pcap-be", "pcapng"):
        assert labkit.tshark_json(demo_files[name], fields) == reference, name
    ns = [r["frame.time_epoch"][0] for r in labkit.tshark_json(demo_files["pcap-ns"], ["frame.time_epoch"])]
    be = [r["frame.time_epoch"][0] for r in labkit.tshark_json(demo_files["pcap-be"], ["frame.time_epoch"])]
    us = [r["frame.time_epoch"][0] for r in labkit.tshark_json(demo_files["pcap"], ["frame.time_epoch"])]
    assert ns == be
    assert any(not t.endswith("000") for t in ns)  # the clock runs in nanoseconds…
    assert all(t.endswith("000") for t in us)  # …and a microsecond file rounds them
    assert ns[0] == "1709629170.000000000"
    info = labkit.run("capinfos", str(demo_files["pcapng"]))
    assert "Capture application: lyncpcap lab" in info and "lyncpcap lab demo" in info


def test_demo_with_https_and_embedded_keys(tmp_path: Path) -> None:
    demo = labkit.build_demo()
    net = demo.net
    client, web = net.host("CLIENT01"), net.host("LYNCWEB")
    keylog: list[str] = []
    with tlssim.Pki() as pki:
        for version in ("1.2", "1.3"):
            net.advance(0.05)
            conn = tlssim.TlsConn(
                net.tcp(client, web, 443),
                pki,
                [labkit.WEB_FQDN],
                sni=labkit.WEB_FQDN,
                version=version,
                keylog=keylog,
            )
            conn.send(labkit.http_request("GET", f"/ucwa/v{version}", labkit.WEB_FQDN))
            conn.reply(labkit.http_response(200, "OK", [("Content-Type", "application/json")], b"{}" * 3000))
            conn.close()
    path = tmp_path / "demo-tls.pcapng"
    net.write_pcapng(str(path), secrets=("\n".join(keylog) + "\n").encode())
    assert labkit.problems(path) == {}
    rows = labkit.frames_with(path, "http.request && tls", ["http.request.uri"])
    assert [r["http.request.uri"] for r in rows] == [["/ucwa/v1.2"], ["/ucwa/v1.3"]]
    assert len(labkit.frames_with(path, "http.request && !tls", ["http.request.uri"])) == 6
