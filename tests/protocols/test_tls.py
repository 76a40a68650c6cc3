"""TLS inspection: corpus connections against tshark/expected.json, built handshakes, alerts, bounds."""

from __future__ import annotations

import ipaddress
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from proto_corpus import CORPUS, expected, needs_corpus, tcp_directions, tshark_fields

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import tls
from lyncpcap.protocols.tls import CLIENT, SERVER, TlsStreamInspector

TLS_FILES = [
    "ndpi/teams.pcap",
    "zeek/tls12-decryption.pcap",
    "zeek/tls-1.2-stream-keylog.pcap",
    "illustrated-tls/tls12-capture.pcap",
    "illustrated-tls/tls13-capture.pcap",
]


def inspect(capture: str, chunk: int | None = None) -> dict[int, TlsStreamInspector]:
    out: dict[int, TlsStreamInspector] = {}
    for (stream, direction), segments in sorted(tcp_directions(capture).items()):
        inspector = out.setdefault(stream, TlsStreamInspector())
        for segment in segments:
            data = segment.data
            step = chunk or len(data)
            for i in range(0, len(data), step):
                inspector.feed(direction, data[i : i + step])
    return out


@needs_corpus
@pytest.mark.parametrize("capture", TLS_FILES)
def test_client_hello_sni_per_stream(capture: str) -> None:
    streams = inspect(capture)
    wanted = {e["tcp_stream"]: e["sni"] for e in expected()[capture]["tls_client_hellos"]}
    ours = {s: i.client_hello.sni for s, i in streams.items() if i.client_hello is not None}
    assert ours == wanted
    if capture == "ndpi/teams.pcap":
        assert len(ours) == 38


@needs_corpus
@pytest.mark.parametrize("capture", TLS_FILES)
def test_server_hello_and_certificate_match_tshark(capture: str) -> None:
    streams = inspect(capture)
    hellos = tshark_fields(
        capture,
        "tls.handshake.type == 2",
        (
            "tcp.stream",
            "tls.handshake.ciphersuite",
            "tls.handshake.extensions.supported_version",
            "tls.handshake.random",
        ),
    )
    assert hellos
    for stream, suite, supported, random in hellos:
        inspector = streams[int(stream)]
        assert inspector.server_hello is not None
        assert inspector.server_hello.cipher_suite == int(suite, 16)
        assert inspector.server_hello.server_random == random.replace(":", "")
        assert inspector.version == ("TLS 1.3" if supported == "0x0304" else "TLS 1.2")
        assert not inspector.errors
        assert inspector.saw_application_data
    certificates = tshark_fields(capture, "tls.handshake.type == 11", ("tcp.stream", "x509ce.dNSName"))
    for stream, names in certificates:
        inspector = streams[int(stream)]
        assert inspector.certificate is not None
        assert set(inspector.certificate.san_dns) == set(names.split(",") if names else [])
        assert inspector.certificate.not_before < inspector.certificate.not_after


@needs_corpus
def test_teams_certificates_name_their_hosts() -> None:
    streams = inspect("ndpi/teams.pcap")
    teams = streams[2]
    assert teams.client_hello is not None and teams.client_hello.alpn == ("h2", "http/1.1")
    assert teams.server_hello is not None and teams.server_hello.alpn == "h2"
    assert teams.certificate_names == ("teams.microsoft.com",)
    assert teams.certificate is not None and teams.certificate.issuer_cn == "Microsoft IT TLS CA 4"
    # every TLS stream decodes without complaint; streams 7, 16 and 34 are not TLS at all
    assert {s for s, i in streams.items() if i.client_hello is None} == {7, 16, 34}
    assert {s for s, i in streams.items() if i.errors} <= {7, 16, 34}


@needs_corpus
def test_client_random_matches_key_log() -> None:
    line = (CORPUS / "zeek/tls12-decryption.keylog").read_text().split()
    assert line[0] == "CLIENT_RANDOM"
    (inspector,) = inspect("zeek/tls12-decryption.pcap").values()
    assert inspector.client_hello is not None
    assert inspector.client_hello.client_random == line[1].lower()
    assert inspector.client_hello.client_random.startswith("4d98940f")
    assert inspector.client_hello.client_random.endswith("e77c1e")
    assert inspector.client_hello.version == "TLS 1.3" and inspector.version == "TLS 1.2"


@needs_corpus
def test_tls13_illustrated() -> None:
    (inspector,) = inspect("illustrated-tls/tls13-capture.pcap").values()
    assert inspector.version == "TLS 1.3" and inspector.client_hello is not None
    assert inspector.client_hello.client_random == bytes(range(32)).hex()
    assert inspector.certificate is None  # encrypted in TLS 1.3
    assert inspector.saw_application_data and not inspector.errors


@needs_corpus
def test_byte_by_byte_equals_whole() -> None:
    for capture in ("zeek/tls12-decryption.pcap", "illustrated-tls/tls13-capture.pcap"):
        whole = inspect(capture)
        split = inspect(capture, chunk=1)
        for stream, inspector in whole.items():
            other = split[stream]
            assert other.client_hello == inspector.client_hello
            assert other.server_hello == inspector.server_hello
            assert other.certificate == inspector.certificate
            assert other.records == inspector.records
            assert other.application_data_records == inspector.application_data_records


# -- built handshakes -----------------------------------------------------------------------------


def _vec(data: bytes, octets: int) -> bytes:
    return len(data).to_bytes(octets, "big") + data


def _ext(ext_type: int, body: bytes) -> bytes:
    return struct.pack("!H", ext_type) + _vec(body, 2)


def _record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + _vec(body, 3)


def client_hello(
    sni: str = "lyncdiscover.contoso.com", versions: tuple[int, ...] = (0x0A0A, 0x0304, 0x0303)
) -> bytes:
    exts = _ext(0, _vec(b"\x00" + _vec(sni.encode(), 2), 2))
    exts += _ext(16, _vec(_vec(b"h2", 1) + _vec(b"http/1.1", 1), 2))
    exts += _ext(43, _vec(b"".join(struct.pack("!H", v) for v in versions), 1))
    exts += _ext(0xFAFA, b"")
    body = struct.pack("!H", 0x0303) + bytes(range(32)) + _vec(b"\x01" * 32, 1)
    body += _vec(struct.pack("!4H", 0x1301, 0xC02F, 0x009C, 0x00FF), 2) + _vec(b"\x00", 1) + _vec(exts, 2)
    return _handshake(1, body)


def server_hello(version: int | None = None, suite: int = 0xC030) -> bytes:
    exts = _ext(43, struct.pack("!H", version)) if version else b""
    body = (
        struct.pack("!H", 0x0303) + b"\x02" * 32 + _vec(b"", 1) + struct.pack("!HB", suite, 0) + _vec(exts, 2)
    )
    return _handshake(2, body)


def make_certificate(cn: str, sans: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Issuing CA")])
    now = datetime(2024, 1, 1, tzinfo=UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(s) for s in sans] + [x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def certificate_message(certs: list[bytes]) -> bytes:
    return _handshake(11, _vec(b"".join(_vec(c, 3) for c in certs), 3))


def test_tls12_handshake_with_certificate_and_alert() -> None:
    leaf = make_certificate(
        "pool01.contoso.com", ["pool01.contoso.com", "lyncdiscover.contoso.com", "meet.contoso.com"]
    )
    ca = make_certificate("Contoso Issuing CA", [])
    inspector = TlsStreamInspector()
    inspector.feed(CLIENT, _record(22, client_hello(), version=0x0301))
    server_flight = server_hello() + certificate_message([leaf, ca]) + _handshake(14, b"")
    # the server flight split over two records, the records split over odd segment sizes
    records = _record(22, server_flight[:100]) + _record(22, server_flight[100:])
    for i in range(0, len(records), 333):
        inspector.feed(SERVER, records[i : i + 333])
    inspector.feed(CLIENT, _record(21, b"\x02\x30"))  # fatal unknown_ca
    assert inspector.client_hello is not None
    hello = inspector.client_hello
    assert (hello.sni, hello.alpn, hello.version) == (
        "lyncdiscover.contoso.com",
        ("h2", "http/1.1"),
        "TLS 1.3",
    )
    assert hello.supported_versions == ("TLS 1.3", "TLS 1.2") and hello.legacy_version == "TLS 1.2"
    assert hello.cipher_suites == (0x1301, 0xC02F, 0x009C, 0x00FF) and 0xFAFA in hello.extensions
    assert inspector.version == "TLS 1.2" and inspector.server_hello is not None
    assert inspector.server_hello.cipher_suite_name == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert inspector.certificate_names == (
        "pool01.contoso.com",
        "lyncdiscover.contoso.com",
        "meet.contoso.com",
    )
    assert inspector.certificate is not None and inspector.certificate.issuer_cn == "Contoso Issuing CA"
    assert inspector.certificate.serial == "1234abcd" and inspector.certificate_chain_length == 2
    assert inspector.certificate.not_after == datetime(2024, 12, 31, tzinfo=UTC)
    assert inspector.alerts == [(CLIENT, 2, 48)]
    assert tls.ALERT_DESCRIPTIONS[48] == "unknown_ca"
    assert not inspector.saw_application_data and not inspector.errors


def test_tls12_encrypted_phase_is_counted_not_buffered() -> None:
    inspector = TlsStreamInspector()
    inspector.feed(CLIENT, _record(22, client_hello()))
    inspector.feed(SERVER, _record(22, server_hello()))
    inspector.feed(CLIENT, _record(20, b"\x01") + _record(22, b"\x99" * 40))  # CCS + encrypted Finished
    inspector.feed(SERVER, _record(20, b"\x01") + _record(22, b"\x98" * 40))
    big = _record(23, b"\x00" * 16000)
    inspector.feed(CLIENT, big[:3])
    inspector.feed(CLIENT, big[3:8000])
    assert inspector._dirs[CLIENT].skip > 0 and len(inspector._dirs[CLIENT].buf) == 0
    inspector.feed(CLIENT, big[8000:] + _record(21, b"\x55" * 26))  # encrypted alert
    assert inspector.saw_application_data and inspector.application_data_records == [1, 0]
    assert inspector.encrypted_alerts == [1, 0] and inspector.alerts == []
    assert inspector.records == [5, 3]


def test_tls13_handshake() -> None:
    inspector = TlsStreamInspector()
    inspector.feed(CLIENT, _record(22, client_hello(), version=0x0301))
    inspector.feed(SERVER, _record(22, server_hello(version=0x0304, suite=0x1301)) + _record(20, b"\x01"))
    inspector.feed(SERVER, _record(23, b"\x11" * 500) + _record(23, b"\x12" * 60))
    assert inspector.version == "TLS 1.3" and not inspector.saw_application_data
    inspector.feed(CLIENT, _record(20, b"\x01") + _record(23, b"\x13" * 53))  # client Finished
    assert not inspector.saw_application_data
    inspector.feed(CLIENT, _record(23, b"\x14" * 100))  # the first request
    assert inspector.saw_application_data and not inspector.errors


def test_hello_retry_request_is_not_the_server_hello() -> None:
    inspector = TlsStreamInspector()
    inspector.feed(CLIENT, _record(22, client_hello()))
    retry = bytearray(server_hello(version=0x0304, suite=0x1301))
    retry[6:38] = bytes.fromhex(tls.HELLO_RETRY_RANDOM)
    inspector.feed(SERVER, _record(22, bytes(retry)))
    assert inspector.hello_retry_request and inspector.server_hello is None


def test_junk_stream_is_reported_not_raised() -> None:
    inspector = TlsStreamInspector()
    inspector.feed(CLIENT, b"GET / HTTP/1.1\r\nHost: lyncdiscover.contoso.com\r\n\r\n")
    inspector.feed(CLIENT, _record(22, client_hello()))  # ignored: this side is dead
    assert inspector.client_hello is None and inspector.errors
    oversize = TlsStreamInspector()
    oversize.feed(SERVER, struct.pack("!BHH", 22, 0x0303, 0xFFFF))
    assert oversize.errors
    huge = TlsStreamInspector()
    huge.feed(SERVER, _record(22, b"\x0b\xff\xff\xff"))
    assert huge.errors and "handshake message" in huge.errors[0]
    with pytest.raises(ValueError):
        inspector.feed(2, b"x")


def test_bad_client_hello_body_is_an_error_not_a_stop() -> None:
    inspector = TlsStreamInspector()
    inspector.feed(CLIENT, _record(22, _handshake(1, b"\x03\x03" + b"\x00" * 10)))
    inspector.feed(SERVER, _record(22, server_hello()))
    assert inspector.client_hello is None and inspector.server_hello is not None
    assert len(inspector.errors) == 1 and "client_hello" in inspector.errors[0]


def test_parse_functions_directly() -> None:
    assert tls.parse_client_hello(client_hello()[4:]).sni == "lyncdiscover.contoso.com"
    with pytest.raises(MalformedError):
        tls.parse_client_hello(client_hello()[4:] + b"\x00")
    with pytest.raises(MalformedError):
        tls.parse_certificate(b"\x30\x03\x02\x01\x01")
    assert tls.version_name(0x7F17) == "TLS 1.3 draft 23" and tls.version_name(0x0200) == "0x0200"
    assert tls.is_grease(0x2A2A) and not tls.is_grease(0x2A2B)


def test_looks_like_tls() -> None:
    assert tls.looks_like_tls(_record(22, client_hello(), version=0x0301))
    assert tls.looks_like_tls(_record(22, server_hello())[:6])
    assert tls.looks_like_tls(b"\x16\x03\x01")
    assert not tls.looks_like_tls(b"\x16\x03\x01\x00\x05\x0b")  # a Certificate cannot open a stream
    assert not tls.looks_like_tls(b"REGISTER sip:contoso.com SIP/2.0\r\n")
    assert not tls.looks_like_tls(b"\x80\x2e\x01\x03\x01")  # SSLv2-format hello
    assert not tls.looks_like_tls(b"\x16\x03")
