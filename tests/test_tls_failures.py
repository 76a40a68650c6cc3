"""TLS handshakes that fail become steps: a client that does not trust the certificate, a server
that shares no TLS version with the client, a client that hangs up after the server's hello.  A
client that finished its handshake and merely left the connection idle is not a failure."""

from __future__ import annotations

import contextlib
import datetime
import ssl
from pathlib import Path

import pytest

import lyncpcap
from lyncpcap.lab import tlssim
from lyncpcap.lab.netsim import Network, TcpConn

START = datetime.datetime(2024, 3, 5, 9, 0, 0, tzinfo=datetime.UTC)
PROXY = "lyncweb.contoso.com"


@pytest.fixture(scope="module")
def pki() -> object:
    with tlssim.Pki() as p:
        yield p


def _capture(tmp_path: Path, build: object) -> Path:
    net = Network(3, START)
    client = net.host("PHONE", "192.168.11.20")
    server = net.host("RP", "203.0.113.10")
    build(net.tcp(client, server, 443))  # type: ignore[operator]
    path = tmp_path / "tls.pcapng"
    net.write_pcapng(path)
    return path


def _tls_steps(path: Path) -> list[lyncpcap.model.Step]:
    a = lyncpcap.analyze(path)
    return [s for s in a.step_list if s.method == "TLS"]


def _client_hello_then(tcp: TcpConn, pki: tlssim.Pki, server_min: ssl.TLSVersion) -> bytes:
    """Send a real TLS 1.2 ClientHello and let a real server answer; returns the server's flight."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(pki.ca_path)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*pki.server_cert(PROXY))
    server_ctx.minimum_version = server_min
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=PROXY)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    hello = c_out.read()
    tcp.send(hello)
    s_in.write(hello)
    with contextlib.suppress(ssl.SSLError):
        server.do_handshake()
    flight = s_out.read()
    tcp.reply(flight)
    return flight


def test_a_client_that_does_not_trust_the_certificate_fails_with_its_alert(pki: tlssim.Pki, tmp_path: Path) -> None:
    path = _capture(tmp_path, lambda tcp: tlssim.untrusted_handshake(tcp, pki, [PROXY], sni=PROXY))
    (step,) = _tls_steps(path)
    assert (step.step, step.status, step.result) == ("other", "unknown_ca", "failure")
    assert step.url == f"tls://{PROXY}:443"
    assert "does not trust the certificate" in (step.failure_reason or "")
    assert step.end is not None and step.end > step.time


def test_a_server_that_shares_no_version_fails_with_protocol_version(pki: tlssim.Pki, tmp_path: Path) -> None:
    def build(tcp: TcpConn) -> None:
        flight = _client_hello_then(tcp, pki, ssl.TLSVersion.TLSv1_3)
        assert flight[:1] == b"\x15"  # the server's answer is an alert record
        tcp.close(by="server")

    (step,) = _tls_steps(_capture(tmp_path, build))
    assert (step.status, step.result) == ("protocol_version", "failure")
    assert "no TLS version or cipher suite" in (step.failure_reason or "")
    assert "from the server" in (step.failure_evidence or "")


def test_a_client_that_hangs_up_after_the_servers_hello_abandoned_the_handshake(
    pki: tlssim.Pki, tmp_path: Path
) -> None:
    def build(tcp: TcpConn) -> None:
        flight = _client_hello_then(tcp, pki, ssl.TLSVersion.TLSv1_2)
        assert flight[:1] == b"\x16"  # ServerHello, Certificate, ... (a handshake record)
        tcp.close(by="client", rst=True)

    (step,) = _tls_steps(_capture(tmp_path, build))
    assert (step.status, step.result) == ("abandoned", "failure")
    assert "after the server's certificate" in (step.failure_reason or "")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_finished_handshake_left_idle_is_not_a_failure(pki: tlssim.Pki, tmp_path: Path, version: str) -> None:
    def build(tcp: TcpConn) -> None:
        conn = tlssim.TlsConn(tcp, pki, [PROXY], sni=PROXY, version=version, keylog=[])
        conn.tcp.close(by="client")

    assert _tls_steps(_capture(tmp_path, build)) == []


def test_a_handshake_cut_by_the_end_of_the_capture_is_not_a_failure(pki: tlssim.Pki, tmp_path: Path) -> None:
    path = _capture(tmp_path, lambda tcp: _client_hello_then(tcp, pki, ssl.TLSVersion.TLSv1_2))
    assert _tls_steps(path) == []


def test_the_failed_handshake_ends_the_session_with_a_reason() -> None:
    """The sample capture: a phone that does not trust the reverse proxy's private-CA certificate."""
    root = Path(__file__).resolve().parents[1]
    a = lyncpcap.analyze(root / "sample_captures" / "09j-certificate-untrusted.pcapng")
    (session,) = a.session_list
    assert session.outcome == "failure"
    assert session.failure is not None
    assert "does not trust the certificate of lyncdiscover.contoso.com:443" in session.failure["reason"]
    assert "unknown_ca" in session.failure["evidence"]
