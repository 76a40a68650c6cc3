"""Recorded real cryptographic material, so plaintext lab captures stay byte-for-byte reproducible.

TLS-DSK handshakes (a real TLS 1.2 handshake with a client certificate, from `tlssim`) and CertProv
CSRs/certificates (real PKCS#10 and X.509 from `cryptography`) are random by nature; they are made
once per user, stored under `lab/fixtures/`, committed, and replayed by every later lab run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

FIXTURES = Path(__file__).with_name("fixtures")


def _load_or_make(name: str, make: Callable[[], dict[str, str]]) -> dict[str, str]:
    path = FIXTURES / f"{name}.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = make()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


@cache
def tls_dsk(user: str, server: str = "fe01.contoso.com") -> list[bytes]:
    """The four TLS-DSK flights of `user` against the registrar `server`."""

    def make() -> dict[str, str]:
        from lyncpcap.lab.tlssim import Pki, tls_dsk_flights

        with Pki() as pki:
            flights = tls_dsk_flights(pki, user, server)
        return {f"flight{i}": base64.b64encode(f).decode() for i, f in enumerate(flights)}

    data = _load_or_make(f"tlsdsk-{user}-{server}", make)
    return [base64.b64decode(data[f"flight{i}"]) for i in range(4)]


@cache
def certificate(sip_uri: str) -> tuple[bytes, bytes]:
    """(PKCS#10 CSR, issued X.509 certificate) in DER, as CertProv exchanges them for `sip_uri`."""

    def make() -> dict[str, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sip_uri)])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(user_key, hashes.SHA256())
        start = datetime(2014, 2, 20, tzinfo=UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Communications Server")]))
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(hours=4320))
            .sign(ca_key, hashes.SHA256())
        )
        return {
            "csr": base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode(),
            "cert": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        }

    safe = sip_uri.replace(":", "_").replace("@", "_at_")
    data = _load_or_make(f"cert-{safe}", make)
    return base64.b64decode(data["csr"]), base64.b64decode(data["cert"])
