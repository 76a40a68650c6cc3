"""Real TLS for the lab: Python's `ssl` (OpenSSL) runs both ends in memory, and the records it
produces travel over a netsim TCP connection, so tshark decrypts them with the key log we keep.

`Pki` makes a CONTOSO-CA and certificates signed by it; `TlsConn` is HTTPS/SIP-over-TLS between
a client and a server; `tls_dsk_flights` is the handshake a Lync client tunnels through SIP
`gssapi-data` for TLS-DSK (MS-SIPAE).  TLS bytes differ on every run (OpenSSL draws its own
randomness); everything else in the lab is deterministic.

RSA key exchange (so the server's key alone decrypts, `tls.keys_list`/`uat:rsa_keys` in tshark)
needs TLS 1.2 and an RSA-kx cipher on both ends: OpenSSL 3 still allows "AES128-GCM-SHA256" at
the default security level (2) with a 2048-bit key, so no "@SECLEVEL=0" is needed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import ssl
import tempfile
import weakref

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lyncpcap.lab.netsim import TcpConn

RSA_KX_CIPHERS = "AES128-GCM-SHA256:AES256-GCM-SHA384"
KX_MODES = ("ecdhe", "rsa")
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class Pki:
    """A CA ("CONTOSO-CA") and certificates signed by it, as files in a private temporary folder
    that is removed by `close()` (or when the object is collected)."""

    def __init__(self, *, not_before: datetime.datetime | None = None, days: int = 36500) -> None:
        self.dir = tempfile.mkdtemp(prefix="lyncpcap-pki-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        # The certificates are checked against the real clock by OpenSSL, not the lab clock.
        self.not_before = not_before or datetime.datetime(2012, 1, 1, tzinfo=datetime.UTC)
        self.not_after = self.not_before + datetime.timedelta(days=days)
        self._ca_key = _key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "com"),
                x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "contoso"),
                x509.NameAttribute(NameOID.COMMON_NAME, "CONTOSO-CA"),
            ]
        )
        self._ca_name = name
        ski = x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key())
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_path = self._write("contoso-ca.crt", self._ca_cert.public_bytes(serialization.Encoding.PEM))
        self._server: dict[tuple[str, ...], tuple[str, str]] = {}
        self._server_keys: dict[str, bytes] = {}
        self._client: dict[str, tuple[str, str]] = {}

    def _write(self, filename: str, data: bytes) -> str:
        path = os.path.join(self.dir, filename)
        with open(path, "wb") as out:
            out.write(data)
        os.chmod(path, 0o600)
        return path

    def _issue(
        self,
        subject_cn: str,
        key: rsa.RSAPrivateKey,
        *,
        server_names: tuple[str, ...] = (),
        client: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
        )
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]), critical=False
            )
        return builder.sign(self._ca_key, hashes.SHA256())

    def server_cert(self, *names: str) -> tuple[str, str]:
        """(certificate path, key path) for a server whose SAN DNS names are `names` (CN = first)."""
        if not names:
            raise ValueError("a server certificate needs at least one name")
        key_names = tuple(n.lower() for n in names)
        if key_names not in self._server:
            key = _key()
            cert = self._issue(names[0], key, server_names=tuple(names))
            stem = f"server-{len(self._server)}"
            pem = _pem_key(key)
            cert_path = self._write(stem + ".crt", cert.public_bytes(serialization.Encoding.PEM))
            key_path = self._write(stem + ".key", pem)
            self._server[key_names] = (cert_path, key_path)
            for n in key_names:
                self._server_keys.setdefault(n, pem)
        return self._server[key_names]

    def client_cert(self, subject_cn: str) -> tuple[str, str]:
        """(certificate path, key path) for a user certificate (client authentication), as Lync
        issues for TLS-DSK."""
        if subject_cn not in self._client:
            key = _key()
            cert = self._issue(subject_cn, key, client=True)
            stem = f"client-{len(self._client)}"
            self._client[subject_cn] = (
                self._write(stem + ".crt", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(stem + ".key", _pem_key(key)),
            )
        return self._client[subject_cn]

    def rsa_key_pem(self, name: str) -> bytes:
        """The PEM private key of the server certificate that carries `name`."""
        try:
            return self._server_keys[name.lower()]
        except KeyError:
            raise KeyError(f"no server certificate for {name!r}") from None

    def temp_path(self, prefix: str) -> str:
        fd, path = tempfile.mkstemp(prefix=prefix, dir=self.dir)
        os.close(fd)
        return path

    def tls(
        self,
        tcp: TcpConn,
        *,
        server_names: list[str],
        sni: str | None = None,
        version: str = "1.2",
        kx: str = "ecdhe",
        keylog: list[str],
    ) -> TlsConn:
        """`TlsConn` over `tcp` with this PKI; the SNI defaults to the first server name."""
        return TlsConn(
            tcp, self, server_names, sni=sni or server_names[0], version=version, kx=kx, keylog=keylog
        )

    def close(self) -> None:
        self._cleanup()

    def __enter__(self) -> Pki:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _contexts(
    pki: Pki,
    server_names: list[str],
    *,
    version: str,
    kx: str,
    keylog_path: str | None,
    client_cert: tuple[str, str] | None = None,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    if version not in VERSIONS:
        raise ValueError(f"version is one of {sorted(VERSIONS)}, not {version!r}")
    if kx not in KX_MODES:
        raise ValueError(f"kx is one of {KX_MODES}, not {kx!r}")
    if kx == "rsa" and version != "1.2":
        raise ValueError("RSA key exchange exists only up to TLS 1.2")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(pki.ca_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert_path, key_path = pki.server_cert(*server_names)
    server.load_cert_chain(cert_path, key_path)
    for ctx in (client, server):
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
        if kx == "rsa":
            ctx.set_ciphers(RSA_KX_CIPHERS)
    if client_cert is not None:
        client.load_cert_chain(*client_cert)
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(pki.ca_path)
    if keylog_path is not None:
        client.keylog_filename = keylog_path
    return client, server


def _pump_until_empty(obj: ssl.SSLObject) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = obj.read(65536)
        except ssl.SSLWantReadError:
            return bytes(out)
        except ssl.SSLZeroReturnError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def _handshake_step(obj: ssl.SSLObject) -> bool:
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True


class TlsConn:
    """TLS between the two ends of a netsim `TcpConn`; records go over the connection with its
    timing.  The handshake runs in the constructor; the NSS key-log lines are appended to the
    `keylog` list given (also kept as `self.keylog`).  With `client_cert` (certificate and key
    files) the server asks for it and the client authenticates with it."""

    def __init__(
        self,
        tcp: TcpConn,
        pki: Pki,
        server_names: list[str],
        *,
        sni: str,
        version: str = "1.2",
        kx: str = "ecdhe",
        keylog: list[str],
        handshake_think: float = 0.005,
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        self.tcp = tcp
        self.keylog = keylog
        self.version = version
        self.kx = kx
        keylog_path = pki.temp_path("keylog-")
        try:
            client_ctx, server_ctx = _contexts(
                pki, server_names, version=version, kx=kx, keylog_path=keylog_path, client_cert=client_cert
            )
            self._c_in, self._c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._s_in, self._s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._client = client_ctx.wrap_bio(
                self._c_in, self._c_out, server_side=False, server_hostname=sni
            )
            self._server = server_ctx.wrap_bio(self._s_in, self._s_out, server_side=True)
            self._handshake(handshake_think)
            with open(keylog_path, encoding="ascii") as f:
                lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        finally:
            with contextlib.suppress(OSError):
                os.unlink(keylog_path)
        keylog.extend(lines)
        self.key_lines = lines  # this connection's lines only
        self._closed = False

    def _handshake(self, think: float) -> None:
        client_done = server_done = False
        for _ in range(10):
            client_done = _handshake_step(self._client) or client_done
            flight = self._c_out.read()
            if flight:
                self.tcp.send(flight)
                self._s_in.write(flight)
            server_done = _handshake_step(self._server) or server_done
            flight = self._s_out.read()
            if flight:
                self.tcp.reply(flight, think=think)
                self._c_in.write(flight)
            if client_done and server_done and not self._c_out.pending and not self._s_out.pending:
                # TLS 1.3 clients read the server's session tickets with the first data; let the
                # client take them now so its next flight is application data only.
                _pump_until_empty(self._client)
                if not self._c_out.pending:
                    return
        raise RuntimeError("TLS handshake did not finish")

    def send(self, data: bytes, *, gap: float = 0.0) -> None:
        """Client → server application data, encrypted."""
        self._client.write(data)
        records = self._c_out.read()
        self.tcp.send(records, gap=gap)
        self._s_in.write(records)
        got = _pump_until_empty(self._server)
        if got != data:
            raise RuntimeError("TLS server did not decrypt what the client sent")

    def reply(self, data: bytes, *, think: float = 0.02) -> None:
        """Server → client application data, encrypted."""
        self._server.write(data)
        records = self._s_out.read()
        self.tcp.reply(records, think=think)
        self._c_in.write(records)
        got = _pump_until_empty(self._client)
        if got != data:
            raise RuntimeError("TLS client did not decrypt what the server sent")

    def close(self, *, by: str = "client", rst: bool = False) -> None:
        """close_notify from `by`, close_notify back, then the TCP close from `by`; with `rst`
        the TCP connection is reset at once, without close_notify (an aborted connection)."""
        if by not in ("client", "server"):
            raise ValueError(f"by is 'client' or 'server', not {by!r}")
        if self._closed:
            return
        self._closed = True
        if rst:
            self.tcp.close(by=by, rst=True)
            return
        first, first_out = (self._client, self._c_out) if by == "client" else (self._server, self._s_out)
        second, second_in, second_out = (
            (self._server, self._s_in, self._s_out)
            if by == "client"
            else (self._client, self._c_in, self._c_out)
        )
        with contextlib.suppress(ssl.SSLWantReadError):
            first.unwrap()
        alert = first_out.read()
        self._carry(by, alert)
        second_in.write(alert)
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            second.unwrap()
        answer = second_out.read()
        self._carry("server" if by == "client" else "client", answer)
        self.tcp.close(by=by)

    def _carry(self, sender: str, data: bytes) -> None:
        if not data:
            return
        if sender == "client":
            self.tcp.send(data)
        else:
            self.tcp.reply(data, think=0.0)


def untrusted_handshake(tcp: TcpConn, pki: Pki, server_names: list[str], *, sni: str, think: float = 0.005) -> None:
    """A client that does not trust the server's certificate (its store lacks the lab's CA): the
    real handshake runs until the client checks the chain, sends its fatal alert and hangs up."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the default store: the lab CA is unknown
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    _, server_ctx = _contexts(pki, server_names, version="1.2", kx="ecdhe", keylog_path=None)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=sni)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(6):
        try:
            _handshake_step(client)
        except ssl.SSLCertVerificationError:
            tcp.send(c_out.read())  # the alert
            break
        flight = c_out.read()
        if flight:
            tcp.send(flight)
            s_in.write(flight)
        with contextlib.suppress(ssl.SSLError):
            _handshake_step(server)
        flight = s_out.read()
        if flight:
            tcp.reply(flight, think=think)
            c_in.write(flight)
    else:
        raise RuntimeError("the client trusted a certificate it should not")
    tcp.close(by="client")


def tls_dsk_flights(
    pki: Pki, user_cn: str, server_name: str, *, keylog: list[str] | None = None
) -> list[bytes]:
    """A real TLS 1.2 handshake with a client certificate, run in memory, as the four flights a
    Lync client and registrar exchange in SIP `gssapi-data` for TLS-DSK:

    [ClientHello, ServerHello…ServerHelloDone (with CertificateRequest),
     Certificate ClientKeyExchange CertificateVerify ChangeCipherSpec Finished,
     ChangeCipherSpec Finished]

    RSA key exchange as Lync uses it, and no session ticket, so the last flight is just
    ChangeCipherSpec + Finished."""
    keylog_path = pki.temp_path("keylog-dsk-") if keylog is not None else None
    try:
        client_ctx, server_ctx = _contexts(
            pki,
            [server_name],
            version="1.2",
            kx="rsa",
            keylog_path=keylog_path,
            client_cert=pki.client_cert(user_cn),
        )
        server_ctx.options |= ssl.OP_NO_TICKET
        client_ctx.options |= ssl.OP_NO_TICKET
        c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=server_name)
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        flights: list[bytes] = []
        client_done = server_done = False
        for _ in range(10):
            client_done = _handshake_step(client) or client_done
            data = c_out.read()
            if data:
                flights.append(data)
                s_in.write(data)
            server_done = _handshake_step(server) or server_done
            data = s_out.read()
            if data:
                flights.append(data)
                c_in.write(data)
            if client_done and server_done and not c_out.pending and not s_out.pending:
                break
        else:
            raise RuntimeError("TLS-DSK handshake did not finish")
        if len(flights) != 4:
            raise RuntimeError(f"TLS-DSK handshake took {len(flights)} flights, expected 4")
        if keylog is not None and keylog_path is not None:
            with open(keylog_path, encoding="ascii") as f:
                keylog.extend(line.strip() for line in f if line.strip() and not line.startswith("#"))
        return flights
    finally:
        if keylog_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(keylog_path)
