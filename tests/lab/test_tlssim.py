"""Tests for lyncpcap.lab.tlssim: real TLS over netsim that tshark decrypts with a key log, an
embedded DSB or (RSA key exchange) the server key; the TLS-DSK handshake flights."""

from __future__ import annotations

import datetime
import os
import struct
from pathlib import Path

import labkit
import pytest
from cryptography import x509
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from lyncpcap.lab import tlssim
from lyncpcap.lab.netsim import ACK, RST, Network

START = datetime.datetime(2024, 3, 5, 9, 0, 0, tzinfo=datetime.UTC)
POOL = "lyncpool.contoso.com"
REQUEST = labkit.http_request("GET", "/WebTicket/WebTicketService.svc/mex", POOL)
RESPONSE = labkit.http_response(200, "OK", [("Content-Type", "application/soap+xml")], b"<x/>" * 1500)


@pytest.fixture(scope="module")
def pki() -> object:
    with tlssim.Pki() as p:
        yield p


def _https(
    pki: tlssim.Pki, *, version: str = "1.2", kx: str = "ecdhe", port: int = 443
) -> tuple[Network, list[str]]:
    net = Network(3, START)
    client = net.host("CLIENT01", "10.0.1.20")
    server = net.host("LYNCPOOL", "10.0.0.10")
    keylog: list[str] = []
    conn = tlssim.TlsConn(
        net.tcp(client, server, port),
        pki,
        [POOL, "lyncdiscoverinternal.contoso.com"],
        sni=POOL,
        version=version,
        kx=kx,
        keylog=keylog,
    )
    conn.send(REQUEST)
    conn.reply(RESPONSE)
    conn.close()
    return net, keylog


def _http(path: Path, prefs: tuple[str, ...] = ()) -> list[dict[str, list[str]]]:
    return labkit.frames_with(
        path,
        "http",
        ["http.request.method", "http.request.uri", "http.response.code", "http.content_length"],
        prefs=prefs,
    )


def _assert_decrypted(rows: list[dict[str, list[str]]]) -> None:
    assert len(rows) == 2
    assert rows[0]["http.request.method"] == ["GET"]
    assert rows[0]["http.request.uri"] == ["/WebTicket/WebTicketService.svc/mex"]
    assert rows[1]["http.response.code"] == ["200"] and rows[1]["http.content_length"] == ["6000"]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_keylog_file_decrypts(tmp_path: Path, pki: tlssim.Pki, version: str) -> None:
    net, keylog = _https(pki, version=version)
    path, keys = tmp_path / "tls.pcap", tmp_path / "keys.txt"
    net.write_pcap(str(path))
    keys.write_text("\n".join(keylog) + "\n")
    if version == "1.2":
        assert any(line.startswith("CLIENT_RANDOM ") for line in keylog)
    else:
        assert {line.split()[0] for line in keylog} >= {
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_TRAFFIC_SECRET_0",
        }
    assert _http(path) == []  # nothing readable without the keys
    prefs = ("-o", f"tls.keylog_file:{keys}")
    _assert_decrypted(_http(path, prefs))
    assert labkit.problems(path, prefs=prefs) == {}
    hello = labkit.frames_with(path, "tls.handshake.type == 1", ["tls.handshake.extensions_server_name"])
    assert hello[0]["tls.handshake.extensions_server_name"] == [POOL]
    alerts = labkit.frames_with(path, "tls.alert_message", ["tls.alert_message.desc"], prefs=prefs)
    assert [r["tls.alert_message.desc"] for r in alerts] == [["0"], ["0"]]  # close_notify both ways
    if version == "1.3":
        sh = labkit.frames_with(
            path, "tls.handshake.type == 2", ["tls.handshake.extensions.supported_version"]
        )
        assert sh[0]["tls.handshake.extensions.supported_version"] == ["0x0304"]


def test_embedded_secrets_decrypt_without_options(tmp_path: Path, pki: tlssim.Pki) -> None:
    net, keylog = _https(pki)
    path = tmp_path / "dsb.pcapng"
    net.write_pcapng(str(path), secrets=("\n".join(keylog) + "\n").encode(), comment="TLS with a DSB")
    _assert_decrypted(_http(path))
    stripped = tmp_path / "stripped.pcapng"
    labkit.run("editcap", "--discard-all-secrets", str(path), str(stripped))
    assert _http(stripped) == []


def test_rsa_key_exchange_decrypts_with_the_server_key(tmp_path: Path, pki: tlssim.Pki) -> None:
    net, _ = _https(pki, kx="rsa")
    path, key = tmp_path / "rsa.pcap", tmp_path / "server.key"
    net.write_pcap(str(path))
    key.write_bytes(pki.rsa_key_pem(POOL))
    suite = labkit.frames_with(path, "tls.handshake.type == 2", ["tls.handshake.ciphersuite"])
    assert suite[0]["tls.handshake.ciphersuite"] == ["0x009c"]  # TLS_RSA_WITH_AES_128_GCM_SHA256
    # tshark 4.0 takes the legacy list "ip,port,protocol,keyfile" and the RSA keys table.
    _assert_decrypted(_http(path, ("-o", f"tls.keys_list:10.0.0.10,443,http,{key}")))
    _assert_decrypted(_http(path, ("-o", f'uat:rsa_keys:"{key}",""')))
    assert pki.rsa_key_pem("LYNCDISCOVERINTERNAL.contoso.com") == pki.rsa_key_pem(POOL)


def test_bad_parameters(pki: tlssim.Pki) -> None:
    net = Network(1, START)
    c, s = net.host("c", "10.0.0.1"), net.host("s", "10.0.0.2")
    with pytest.raises(ValueError):
        tlssim.TlsConn(net.tcp(c, s, 443), pki, [POOL], sni=POOL, version="1.3", kx="rsa", keylog=[])
    with pytest.raises(ValueError):
        tlssim.TlsConn(net.tcp(c, s, 443), pki, [POOL], sni=POOL, version="1.1", keylog=[])
    with pytest.raises(KeyError):
        pki.rsa_key_pem("unknown.contoso.com")


def test_certificates(pki: tlssim.Pki) -> None:
    cert_path, key_path = pki.server_cert("fe01.contoso.com", "pool01.contoso.com")
    assert pki.server_cert("fe01.contoso.com", "pool01.contoso.com") == (cert_path, key_path)
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    ca = x509.load_pem_x509_certificate(Path(pki.ca_path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fe01.contoso.com", "pool01.contoso.com"]
    assert cert.issuer == ca.subject and "CN=CONTOSO-CA" in ca.subject.rfc4514_string()
    cert.verify_directly_issued_by(ca)
    user_cert = x509.load_pem_x509_certificate(Path(pki.client_cert("sip:alice@contoso.com")[0]).read_bytes())
    assert user_cert.subject.rfc4514_string() == "CN=sip:alice@contoso.com"
    eku = user_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_pki_removes_its_folder() -> None:
    p = tlssim.Pki()
    folder = p.dir
    p.server_cert("x.contoso.com")
    assert os.path.isdir(folder)
    p.close()
    assert not os.path.exists(folder)


def _records(flight: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(flight):
        ctype, _, length = struct.unpack("!BHH", flight[pos : pos + 5])
        out.append((ctype, flight[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    assert pos == len(flight)
    return out


def _handshake_types(body: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(body):
        out.append(body[pos])
        pos += 4 + int.from_bytes(body[pos + 1 : pos + 4], "big")
    return out


def test_tls_dsk_flights(tmp_path: Path, pki: tlssim.Pki) -> None:
    keylog: list[str] = []
    flights = tlssim.tls_dsk_flights(pki, "sip:alice@contoso.com", "fe01.contoso.com", keylog=keylog)
    assert len(flights) == 4
    records = [_records(f) for f in flights]
    # OpenSSL writes one record per handshake message; what matters is the order within a flight.
    plain = [[(ctype, _handshake_types(body)) for ctype, body in recs] for recs in records[:2]]
    assert plain[0] == [(22, [1])]  # ClientHello
    assert [t for _, types in plain[1] for t in types] == [2, 11, 13, 14]  # …Certificate, CertificateRequest…
    assert {c for c, _ in plain[1]} == {22}
    third = records[2]
    assert [c for c, _ in third] == [22, 22, 22, 20, 22]  # Certificate, CKE, CertificateVerify, CCS, Finished
    assert [_handshake_types(b)[0] for _, b in third[:3]] == [11, 16, 15]
    assert [c for c, _ in records[3]] == [20, 22]  # CCS, Finished
    # The client's Certificate message carries the user certificate.
    body = third[0][1]
    first_len = int.from_bytes(body[7:10], "big")
    user_cert = x509.load_der_x509_certificate(body[10 : 10 + first_len])
    assert user_cert.subject.rfc4514_string() == "CN=sip:alice@contoso.com"
    assert any(line.startswith("CLIENT_RANDOM ") for line in keylog)
    # The same bytes carried over TCP are a TLS 1.2 handshake to tshark.
    net = Network(4, START)
    conn = net.tcp(net.host("c", "10.0.1.20"), net.host("fe01", "10.0.0.11"), 443)
    for i, flight in enumerate(flights):
        (conn.send if i % 2 == 0 else conn.reply)(flight)
    path = tmp_path / "dsk.pcap"
    net.write_pcap(str(path))
    rows = labkit.frames_with(path, "tls.handshake", ["tls.handshake.type"])
    types = [t for r in rows for t in r.get("tls.handshake.type", [])]
    assert types[:8] == ["1", "2", "11", "13", "14", "11", "16", "15"]
    assert labkit.problems(path) == {}


def test_keep_alive_over_ipv6_closed_by_the_server(tmp_path: Path, pki: tlssim.Pki) -> None:
    net = Network(5, START)
    client = net.host("CLIENT01", "10.0.1.20", "fd00:1::20")
    server = net.host("LYNCPOOL", "10.0.0.10", "fd00::10")
    keylog: list[str] = []
    conn = tlssim.TlsConn(net.tcp(client, server, 443, family=6), pki, [POOL], sni=POOL, keylog=keylog)
    for n in range(3):
        conn.send(labkit.http_request("GET", f"/ucwa/{n}", POOL), gap=0.05)
        conn.reply(labkit.http_response(200, "OK", body=bytes(20000)))
    conn.close(by="server")
    assert conn.key_lines == keylog
    path, keys = tmp_path / "v6.pcap", tmp_path / "keys.txt"
    net.write_pcap(str(path))
    keys.write_text("\n".join(keylog) + "\n")
    prefs = ("-o", f"tls.keylog_file:{keys}")
    rows = labkit.frames_with(path, "http.request", ["http.request.uri", "ipv6.src"], prefs=prefs)
    assert [r["http.request.uri"] for r in rows] == [["/ucwa/0"], ["/ucwa/1"], ["/ucwa/2"]]
    assert labkit.problems(path, prefs=prefs) == {}
    fins = labkit.frames_with(path, "tcp.flags.fin == 1", ["ipv6.src"])
    assert fins[0]["ipv6.src"] == ["fd00::10"]


def test_pki_tls_helper_and_reset(pki: tlssim.Pki) -> None:
    net = Network(6, START)
    client, server = net.host("CLIENT01", "10.0.1.20"), net.host("LYNCPOOL", "10.0.0.10")
    keylog: list[str] = []
    conn = pki.tls(net.tcp(client, server, 443), server_names=[POOL], keylog=keylog)
    conn.send(REQUEST)
    conn.close(rst=True)
    conn.close()  # already closed
    rows = [Ether(f) for _, f in net.packets()]
    assert rows[-1][TCP].flags.value == RST | ACK
    hello = next(p for p in rows if TCP in p and bytes(p[TCP].payload)[:1] == b"\x16")
    assert POOL.encode() in bytes(hello[TCP].payload)  # SNI defaulted to the first name
    assert keylog
