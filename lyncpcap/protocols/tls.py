"""Just enough TLS (RFC 5246, RFC 8446) to report on a connection without its keys.

Reads the clear-text handshake — ClientHello (SNI, ALPN, versions, suites, client random),
ServerHello, the server's certificate (CN and SAN DNS names of the leaf), alerts — and counts the
encrypted records that follow, incrementally over the two directions of a TCP stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import asn1
from lyncpcap.protocols.asn1 import Element, Tag, TagClass

CLIENT = 0  # direction: client → server
SERVER = 1  # direction: server → client

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CONTENT_TYPES = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT})

CLIENT_HELLO, SERVER_HELLO, CERTIFICATE = 1, 2, 11
HANDSHAKE_NAMES = {
    0: "hello_request",
    1: "client_hello",
    2: "server_hello",
    4: "new_session_ticket",
    5: "end_of_early_data",
    8: "encrypted_extensions",
    11: "certificate",
    12: "server_key_exchange",
    13: "certificate_request",
    14: "server_hello_done",
    15: "certificate_verify",
    16: "client_key_exchange",
    20: "finished",
    22: "certificate_status",
    24: "key_update",
}

EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43

VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}

ALERT_LEVELS = {1: "warning", 2: "fatal"}
ALERT_DESCRIPTIONS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# Suites a Lync/SfB-era or current Microsoft endpoint negotiates (IANA TLS Cipher Suites registry).
CIPHER_SUITE_NAMES = {
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}

# RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest.
HELLO_RETRY_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"

MAX_RECORD_BODY = (1 << 14) + 2048  # TLSCiphertext limit (RFC 5246 §6.2.3)
MAX_HANDSHAKE_MESSAGE = 1 << 18  # certificate chains stay far below 256 KiB

OID_COMMON_NAME = "2.5.4.3"
OID_SUBJECT_ALT_NAME = "2.5.29.17"


def version_name(value: int) -> str:
    if value in VERSION_NAMES:
        return VERSION_NAMES[value]
    if value >> 8 == 0x7F:
        return f"TLS 1.3 draft {value & 0xFF}"
    return f"0x{value:04x}"


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x0A0A, 0x1A1A, … 0xFAFA) that clients sprinkle into lists."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def cipher_suite_name(value: int) -> str:
    return CIPHER_SUITE_NAMES.get(value, f"0x{value:04x}")


@dataclass(frozen=True, slots=True)
class TlsHello:
    """A ClientHello (RFC 8446 §4.1.2)."""

    legacy_version: str
    version: str  # highest version offered (supported_versions when present, GREASE ignored)
    client_random: str  # hex, as in an NSS key log CLIENT_RANDOM line
    session_id: str  # hex
    cipher_suites: tuple[int, ...]
    sni: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[str, ...]
    extensions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TlsServerHello:
    """A ServerHello (RFC 8446 §4.1.3); `version` is the negotiated one."""

    legacy_version: str
    version: str
    server_random: str
    session_id: str
    cipher_suite: int
    alpn: str | None
    extensions: tuple[int, ...]
    hello_retry_request: bool

    @property
    def cipher_suite_name(self) -> str:
        return cipher_suite_name(self.cipher_suite)


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """The facts of one X.509 certificate (RFC 5280 §4.1) a sign-in report needs."""

    subject_cn: str | None
    issuer_cn: str | None
    san_dns: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    serial: str  # hex

    @property
    def names(self) -> tuple[str, ...]:
        """Subject CN then SAN DNS names, without repeats."""
        seen: dict[str, None] = {}
        for name in ((self.subject_cn,) if self.subject_cn else ()) + self.san_dns:
            seen.setdefault(name, None)
        return tuple(seen)


# -- byte reader ----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("_mv", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self._mv = memoryview(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._mv) - self.pos

    def take(self, n: int) -> memoryview:
        if n > self.remaining:
            raise MalformedError("TLS structure runs past its end")
        out = self._mv[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def vec(self, length_octets: int) -> memoryview:
        return self.take(int.from_bytes(self.take(length_octets), "big"))

    def done(self, what: str) -> None:
        if self.remaining:
            raise MalformedError(f"{self.remaining} unexpected bytes after {what}")


def _u16_list(raw: memoryview, what: str) -> tuple[int, ...]:
    if len(raw) % 2:
        raise MalformedError(f"odd length {what}")
    return tuple(struct.unpack(f"!{len(raw) // 2}H", raw))


def _extensions(r: _Reader) -> list[tuple[int, memoryview]]:
    if r.remaining == 0:
        return []
    block = _Reader(r.vec(2))
    out = []
    while block.remaining:
        ext_type = block.u16()
        out.append((ext_type, block.vec(2)))
    return out


def _alpn_list(raw: memoryview) -> tuple[str, ...]:
    r = _Reader(raw)
    names = _Reader(r.vec(2))
    r.done("ALPN extension")
    out = []
    while names.remaining:
        out.append(bytes(names.vec(1)).decode("ascii", errors="replace"))
    return tuple(out)


def _server_name(raw: memoryview) -> str | None:
    """server_name extension (RFC 6066 §3): the first host_name entry."""
    r = _Reader(raw)
    entries = _Reader(r.vec(2))
    r.done("server_name extension")
    while entries.remaining:
        name_type = entries.u8()
        name = entries.vec(2)
        if name_type == 0:
            return bytes(name).decode("utf-8", errors="replace")
    return None


def parse_client_hello(body: bytes | memoryview) -> TlsHello:
    """ClientHello handshake body (after the 4-byte handshake header)."""
    r = _Reader(body)
    legacy = r.u16()
    random = r.take(32)
    session_id = r.vec(1)
    if len(session_id) > 32:
        raise MalformedError("ClientHello session id longer than 32")
    suites = _u16_list(r.vec(2), "cipher_suites")
    r.vec(1)  # legacy_compression_methods
    extensions = _extensions(r)
    r.done("ClientHello")
    sni = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    for ext_type, data in extensions:
        if ext_type == EXT_SERVER_NAME and data:
            sni = _server_name(data)
        elif ext_type == EXT_ALPN:
            alpn = _alpn_list(data)
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            vr = _Reader(data)
            versions = _u16_list(vr.vec(1), "supported_versions")
            vr.done("supported_versions")
    real_versions = [v for v in versions if not is_grease(v)]
    offered = max(real_versions, key=_version_rank) if real_versions else legacy
    return TlsHello(
        legacy_version=version_name(legacy),
        version=version_name(offered),
        client_random=bytes(random).hex(),
        session_id=bytes(session_id).hex(),
        cipher_suites=suites,
        sni=sni,
        alpn=alpn,
        supported_versions=tuple(version_name(v) for v in real_versions),
        extensions=tuple(t for t, _ in extensions),
    )


def _version_rank(value: int) -> int:
    return 0x0304 if value >> 8 == 0x7F else value  # drafts rank as TLS 1.3


def parse_server_hello(body: bytes | memoryview) -> TlsServerHello:
    """ServerHello handshake body (after the 4-byte handshake header)."""
    r = _Reader(body)
    legacy = r.u16()
    random = bytes(r.take(32)).hex()
    session_id = r.vec(1)
    suite = r.u16()
    r.u8()  # legacy_compression_method
    extensions = _extensions(r)
    r.done("ServerHello")
    chosen = legacy
    alpn = None
    for ext_type, data in extensions:
        if ext_type == EXT_SUPPORTED_VERSIONS:
            if len(data) != 2:
                raise MalformedError("ServerHello supported_versions is not 2 bytes")
            chosen = struct.unpack("!H", data)[0]
        elif ext_type == EXT_ALPN:
            names = _alpn_list(data)
            alpn = names[0] if names else None
    return TlsServerHello(
        legacy_version=version_name(legacy),
        version=version_name(chosen),
        server_random=random,
        session_id=bytes(session_id).hex(),
        cipher_suite=suite,
        alpn=alpn,
        extensions=tuple(t for t, _ in extensions),
        hello_retry_request=random == HELLO_RETRY_RANDOM,
    )


# -- X.509 ----------------------------------------------------------------------------------------


def _common_name(name: Element) -> str | None:
    """Last commonName in a Name (RDNSequence: SEQUENCE OF SET OF AttributeTypeAndValue)."""
    cn = None
    for rdn in name.sequence():
        rdn.expect_universal(Tag.SET)
        for atv in rdn.children():
            parts = atv.sequence()
            if len(parts) != 2:
                raise MalformedError("AttributeTypeAndValue is not a pair")
            if parts[0].oid() == OID_COMMON_NAME:
                cn = parts[1].string()
    return cn


def _san_dns(extensions: Element) -> tuple[str, ...]:
    names: list[str] = []
    for ext in extensions.sequence():
        parts = ext.sequence()
        if len(parts) not in (2, 3):
            raise MalformedError("Extension has the wrong shape")
        if parts[0].oid() != OID_SUBJECT_ALT_NAME:
            continue
        value = parts[-1].expect(TagClass.UNIVERSAL, Tag.OCTET_STRING, False)
        for general_name in asn1.decode(value.value).sequence():
            if general_name.is_tag(TagClass.CONTEXT, 2, False):  # dNSName [2] IMPLICIT IA5String
                names.append(asn1.decode_text(general_name.value))
    return tuple(names)


def parse_certificate(der: bytes | memoryview) -> TlsCertificate:
    """One DER X.509 certificate: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }."""
    cert = asn1.decode(der).sequence()
    if len(cert) != 3:
        raise MalformedError("Certificate is not a 3-element SEQUENCE")
    tbs = cert[0].sequence()
    i = 1 if tbs and tbs[0].is_tag(TagClass.CONTEXT, 0, True) else 0
    if len(tbs) < i + 6:
        raise MalformedError("TBSCertificate too short")
    serial = tbs[i].expect(TagClass.UNIVERSAL, Tag.INTEGER, False)
    validity = tbs[i + 3].sequence()
    if len(validity) != 2:
        raise MalformedError("Validity is not a pair")
    san: tuple[str, ...] = ()
    for extra in tbs[i + 6 :]:
        if extra.is_tag(TagClass.CONTEXT, 3, True):
            san = _san_dns(extra.inner())
    return TlsCertificate(
        subject_cn=_common_name(tbs[i + 4]),
        issuer_cn=_common_name(tbs[i + 2]),
        san_dns=san,
        not_before=validity[0].time(),
        not_after=validity[1].time(),
        serial=bytes(serial.value).hex(),
    )


def parse_certificate_message(body: bytes | memoryview, tls13: bool = False) -> tuple[bytes, ...]:
    """DER certificates of a Certificate handshake body (RFC 5246 §7.4.2 / RFC 8446 §4.4.2), leaf first."""
    r = _Reader(body)
    if tls13:
        r.vec(1)  # certificate_request_context
    entries = _Reader(r.vec(3))
    r.done("Certificate")
    out = []
    while entries.remaining:
        out.append(bytes(entries.vec(3)))
        if tls13:
            entries.vec(2)  # per-certificate extensions
    return tuple(out)


# -- the stream inspector -------------------------------------------------------------------------


def looks_like_tls_record(data: bytes | bytearray | memoryview) -> bool:
    """Does `data` start with a TLS record header of any type (a stream picked up in its middle,
    after the handshake: application data, most likely)?"""
    b = bytes(data[:5])
    if len(b) < 5 or b[0] not in (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT):
        return False
    return b[1] == 3 and b[2] <= 4 and 0 < ((b[3] << 8) | b[4]) <= MAX_RECORD_BODY


def looks_like_tls(first_bytes: bytes | bytearray | memoryview) -> bool:
    """Does a stream start with a TLS record (ClientHello/ServerHello, or an alert)?  SSLv2 hellos: no."""
    b = bytes(first_bytes[:6])
    if len(b) < 3 or b[0] not in (HANDSHAKE, ALERT) or b[1] != 3 or b[2] > 4:
        return False
    if len(b) >= 5:
        length = (b[3] << 8) | b[4]
        if length == 0 or length > MAX_RECORD_BODY:
            return False
    return not (len(b) >= 6 and b[0] == HANDSHAKE and b[5] not in (CLIENT_HELLO, SERVER_HELLO))


class _Direction:
    __slots__ = ("buf", "dead", "encrypted", "hs_buf", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.hs_buf = bytearray()
        self.skip = 0
        self.encrypted = False
        self.dead = False


class TlsStreamInspector:
    """Follows both directions of one TLS connection; `feed(direction, data)` with CLIENT or SERVER.

    `feed` never raises: a stream that stops looking like TLS is noted in `errors` and that
    direction is ignored from then on. Once a direction is encrypted (after its ChangeCipherSpec, or
    the server's after a TLS 1.3 ServerHello) only record headers are read: bodies are skipped, not
    buffered, so memory stays bounded by one record (plus one handshake message while in clear).

    With `certificates=False` the X.509 certificates are not decoded (the chain is still split, so
    `certificate_chain_length` is known): decoding them costs more than all the rest together, and
    a caller that only needs hellos, alerts and whether data followed does not pay for it.
    """

    def __init__(self, *, certificates: bool = True) -> None:
        self.read_certificates = certificates
        self.client_hello: TlsHello | None = None
        self.server_hello: TlsServerHello | None = None
        self.hello_retry_request = False
        self.certificate: TlsCertificate | None = None  # server leaf
        self.certificate_chain_length = 0
        self.client_certificate: TlsCertificate | None = None  # client auth (e.g. TLS-DSK) leaf
        self.client_certificate_sent = False  # the client sent a certificate (decoded or not)
        self.alerts: list[tuple[int, int, int]] = []  # (direction, level, description), clear text only
        self.encrypted_alerts = [0, 0]  # alert records that could not be read, per direction
        self.records = [0, 0]
        self.application_data_records = [0, 0]
        self.saw_change_cipher_spec = [False, False]
        self.errors: list[str] = []
        self._dirs = (_Direction(), _Direction())
        self._server_data_after_client_encrypted = 0

    # -- results ----------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """Negotiated version ("TLS 1.2", "TLS 1.3" …) once the ServerHello was seen."""
        return self.server_hello.version if self.server_hello else None

    @property
    def tls13(self) -> bool:
        return self.version is not None and self.version.startswith("TLS 1.3")

    @property
    def certificate_names(self) -> tuple[str, ...]:
        return self.certificate.names if self.certificate else ()

    @property
    def saw_application_data(self) -> bool:
        """Did application data follow the handshake?

        TLS ≤ 1.2: any application_data record. TLS 1.3 hides the rest of the handshake in
        application_data records too, so there it means: the client sent a record after the one
        carrying its Finished, or the server sent one after the client's first encrypted record.
        """
        if not self.tls13:
            return any(self.application_data_records)
        return self.application_data_records[CLIENT] >= 2 or self._server_data_after_client_encrypted > 0

    # -- input ------------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes | bytearray | memoryview) -> None:
        if direction not in (CLIENT, SERVER):
            raise ValueError(f"direction must be CLIENT (0) or SERVER (1), not {direction!r}")
        state = self._dirs[direction]
        if state.dead or not data:
            return
        state.buf += data
        try:
            self._records(direction, state)
        except MalformedError as exc:
            self._fail(direction, str(exc))

    def _fail(self, direction: int, why: str) -> None:
        state = self._dirs[direction]
        state.dead = True
        state.buf.clear()
        state.hs_buf.clear()
        self.errors.append(f"{'client' if direction == CLIENT else 'server'}: {why}")

    def _records(self, direction: int, state: _Direction) -> None:
        buf = state.buf
        while True:
            if state.skip:
                n = min(state.skip, len(buf))
                del buf[:n]
                state.skip -= n
                if state.skip:
                    return
            if len(buf) < 5:
                return
            content_type, major, minor, length = buf[0], buf[1], buf[2], (buf[3] << 8) | buf[4]
            if content_type not in CONTENT_TYPES or major != 3 or minor > 4:
                if content_type & 0x80 and not self.records[direction]:
                    raise MalformedError("SSLv2-format record (not decoded)")
                raise MalformedError(f"not a TLS record header: {bytes(buf[:5]).hex()}")
            if length > MAX_RECORD_BODY:
                raise MalformedError(f"TLS record of {length} bytes")
            self.records[direction] += 1
            if content_type == APPLICATION_DATA or (state.encrypted and content_type != CHANGE_CIPHER_SPEC):
                self._encrypted_record(direction, state, content_type)
                del buf[:5]
                state.skip = length
                continue
            if len(buf) < 5 + length:
                self.records[direction] -= 1  # counted again when complete
                return
            body = bytes(buf[5 : 5 + length])
            del buf[: 5 + length]
            self._plain_record(direction, state, content_type, body)

    def _encrypted_record(self, direction: int, state: _Direction, content_type: int) -> None:
        if content_type == APPLICATION_DATA:
            self.application_data_records[direction] += 1
            if direction == CLIENT:
                state.encrypted = True  # TLS 1.3 client without compatibility-mode CCS
            elif self.application_data_records[CLIENT]:
                self._server_data_after_client_encrypted += 1
        elif content_type == ALERT:
            self.encrypted_alerts[direction] += 1

    def _plain_record(self, direction: int, state: _Direction, content_type: int, body: bytes) -> None:
        if content_type == CHANGE_CIPHER_SPEC:
            # Everything this side sends after it is protected (in TLS 1.3 the CCS is only for
            # middlebox compatibility, but it is still sent right before the encrypted flight).
            self.saw_change_cipher_spec[direction] = True
            state.encrypted = True
            return
        if content_type == ALERT:
            if len(body) % 2 or not body:
                self.encrypted_alerts[direction] += 1
                return
            for i in range(0, len(body), 2):
                self.alerts.append((direction, body[i], body[i + 1]))
            return
        if content_type == HANDSHAKE:
            state.hs_buf += body
            self._handshake_messages(direction, state)

    def _handshake_messages(self, direction: int, state: _Direction) -> None:
        hs = state.hs_buf
        while len(hs) >= 4:
            msg_type = hs[0]
            length = int.from_bytes(hs[1:4], "big")
            if length > MAX_HANDSHAKE_MESSAGE:
                raise MalformedError(f"handshake message of {length} bytes")
            if len(hs) < 4 + length:
                return
            body = bytes(hs[4 : 4 + length])
            del hs[: 4 + length]
            self._handshake(direction, msg_type, body)
            if state.encrypted:
                hs.clear()
                return

    def _handshake(self, direction: int, msg_type: int, body: bytes) -> None:
        try:
            if msg_type == CLIENT_HELLO and direction == CLIENT:
                if self.client_hello is None:
                    self.client_hello = parse_client_hello(body)
            elif msg_type == SERVER_HELLO and direction == SERVER:
                hello = parse_server_hello(body)
                if hello.hello_retry_request:
                    self.hello_retry_request = True
                else:
                    self.server_hello = hello
                    if self.tls13:
                        self._dirs[SERVER].encrypted = True
            elif msg_type == CERTIFICATE:
                chain = parse_certificate_message(body, tls13=self.tls13)
                leaf = parse_certificate(chain[0]) if chain and self.read_certificates else None
                if direction == SERVER:
                    self.certificate = leaf
                    self.certificate_chain_length = len(chain)
                else:
                    self.client_certificate = leaf
                    self.client_certificate_sent = bool(chain)
        except MalformedError as exc:
            name = HANDSHAKE_NAMES.get(msg_type, f"handshake type {msg_type}")
            self.errors.append(f"{'client' if direction == CLIENT else 'server'} {name}: {exc}")
