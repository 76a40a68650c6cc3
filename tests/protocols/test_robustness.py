"""Every decoder survives truncation at every offset and random byte changes of real messages.

The only exception allowed out of a parser is `MalformedError`; stream inspectors and framers
never raise at all. A fixed seed keeps the fuzzing repeatable; pytest-timeout catches hangs.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from typing import Any

import proto_rfc4120 as R
import pytest
from proto_corpus import CORPUS, TSHARK, tcp_directions, tshark_fields

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import asn1, dns, kerberos, ntlm, spnego, tls
from lyncpcap.protocols.kerberos import KerberosTcpFramer

SEED = 20240501
MUTATIONS = 250

HAVE_CORPUS = (CORPUS / "expected.json").is_file() and TSHARK is not None


def _built_kerberos() -> list[bytes]:
    return [
        R.as_req("alice", "CONTOSO.COM", padata=[(2, b"\x30\x00"), (128, b"\x30\x00")]),
        R.as_rep("CONTOSO.COM", "alice"),
        R.tgs_req("CONTOSO.COM", "HTTP/lyncpool.contoso.com", additional=[("CONTOSO.COM", "HTTP/x", 23)]),
        R.tgs_rep("CONTOSO.COM", "alice", "sip/fe01.contoso.com", 23),
        R.ap_req("CONTOSO.COM", "HTTP/lyncpool.contoso.com"),
        R.ap_rep(),
        R.krb_error(
            25,
            "CONTOSO.COM",
            "krbtgt/CONTOSO.COM",
            cname="alice",
            crealm="CONTOSO.COM",
            e_text="x",
            e_data=R.method_data([2, 19]),
        ),
    ]


def _corpus_kerberos() -> list[bytes]:
    out = [
        bytes.fromhex(p)
        for _, p in tshark_fields(
            "bruteshark/kerberos-v5-udp-3.pcap", "udp.port == 88", ("frame.number", "udp.payload")
        )
    ]
    for capture in ("bruteshark/kerberos-v5-tcp.pcap", "suricata-verify/kerberoast.pcap"):
        for segments in tcp_directions(capture, "tcp.port == 88 and tcp.len > 0").values():
            framer = KerberosTcpFramer()
            for segment in segments:
                out += framer.feed(segment.data)
    return out


def _corpus_http_tokens(capture: str) -> list[bytes]:
    rows = tshark_fields(
        capture,
        "http.authorization or http.www_authenticate",
        ("http.authorization", "http.www_authenticate"),
    )
    out = []
    for row in rows:
        for value in ",".join(row).split(","):
            _scheme, _, token = value.strip().partition(" ")
            if token:
                out.append(base64.b64decode(token))
    return out


def samples() -> dict[str, list[bytes]]:
    ntlm_messages = [
        base64.b64decode("TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw=="),
    ]
    spnego_tokens = [
        R.neg_token_init(
            [R.OID_MS_KRB5, R.OID_KRB5, R.OID_NTLM], R.gss_krb5(b"\x01\x00", R.ap_req("C.COM", "HTTP/a"))
        ),
        R.neg_token_resp(0, R.OID_MS_KRB5, R.gss_krb5(b"\x02\x00", R.ap_rep())),
        R.neg_token_init([R.OID_NTLM], ntlm_messages[0]),
    ]
    dns_messages = [  # an SRV answer with compression, built with scapy
        bytes.fromhex(
            "1234858000010001000000010f5f736970696e7465726e616c746c73045f74637007636f6e746f736f03636f6d"
            "0000210001c00c002100010000012c000f0000000013c506706f6f6c3031c021c04400010001000000000004c000020a"
        )
    ]
    out = {
        "kerberos": _built_kerberos(),
        "ntlm": ntlm_messages,
        "spnego": spnego_tokens,
        "dns": dns_messages,
        "tls": [],
    }
    if HAVE_CORPUS:
        out["kerberos"] += _corpus_kerberos()
        for capture in ("zeek/erspan.pcap", "ndpi/webdav.pcap", "bruteshark/http-ntlm-gssapi.pcap"):
            out["ntlm"] += _corpus_http_tokens(capture)
        out["spnego"] += _corpus_http_tokens("bruteshark/kerberos-v5-udp-3.pcap")
        out["spnego"] += [
            bytes.fromhex(b)
            for _, b in tshark_fields(
                "arkime/ntlm_synthetic.pcap", "smb.security_blob", ("frame.number", "smb.security_blob")
            )
        ]
        out["dns"] += [
            bytes.fromhex(p)
            for _, p in tshark_fields("arkime/dns-wiresharkrepo.pcap", "dns", ("frame.number", "udp.payload"))
        ]
        out["dns"] += [
            bytes.fromhex(p)
            for _, p in tshark_fields("zeek/erspan.pcap", "dns", ("frame.number", "udp.payload"))
        ]
        for (_stream, _direction), segments in sorted(tcp_directions("zeek/tls12-decryption.pcap").items()):
            out["tls"].append(b"".join(s.data for s in segments))
    return out


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "kerberos": kerberos.parse,
    "ntlm": ntlm.parse,
    "spnego": spnego.parse,
    "dns": dns.parse,
    "asn1": lambda data: _walk(asn1.decode(data)),
}


def _walk(element: asn1.Element) -> int:
    """Touch every node and every primitive accessor, the way the decoders do."""
    count = 1
    if element.constructed:
        for child in element.children():
            count += _walk(child)
        return count
    for accessor in (
        element.integer,
        element.octets,
        element.string,
        element.oid,
        element.time,
        element.bit_string,
    ):
        try:
            accessor()
        except MalformedError:
            pass
    return count


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(MUTATIONS):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(buf))
            choice = rng.random()
            if choice < 0.6:
                buf[position] = rng.randrange(256)
            elif choice < 0.8:
                buf[position] ^= 1 << rng.randrange(8)
            else:
                buf[position] = rng.choice((0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF))
        out.append(bytes(buf))
    return out


def _call(parser: Callable[[Any], Any], data: bytes | str) -> None:
    # a hang is caught by the suite-wide pytest-timeout, not by a timing assertion
    try:
        parser(data)
    except MalformedError:
        pass


SAMPLES = samples()


@pytest.mark.parametrize("kind", ["kerberos", "ntlm", "spnego", "dns", "asn1"])
def test_truncation_at_every_offset(kind: str) -> None:
    source = SAMPLES["kerberos"] + SAMPLES["spnego"] if kind == "asn1" else SAMPLES[kind]
    assert source
    parser = PARSERS[kind]
    for data in source:
        if kind != "asn1":
            parser(data)  # the untouched message decodes
        for cut in range(len(data)):
            _call(parser, data[:cut])


@pytest.mark.parametrize("kind", ["kerberos", "ntlm", "spnego", "dns", "asn1"])
def test_random_byte_changes(kind: str) -> None:
    rng = random.Random(SEED)
    source = SAMPLES["kerberos"] + SAMPLES["spnego"] if kind == "asn1" else SAMPLES[kind]
    parser = PARSERS[kind]
    for data in source[:40]:
        for mutated in _mutations(data, rng):
            _call(parser, mutated)


def test_base64_entry_point_survives_junk() -> None:
    rng = random.Random(SEED)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n!-_"
    for data in SAMPLES["spnego"][:10]:
        text = base64.b64encode(data).decode()
        for _ in range(100):
            chars = list(text)
            for _ in range(rng.randint(1, 3)):
                chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            _call(spnego.parse_base64, "".join(chars))
        for cut in range(0, len(text), 3):
            _call(spnego.parse_base64, text[:cut])


def test_framers_never_raise() -> None:
    rng = random.Random(SEED)
    krb_stream = b"".join(len(m).to_bytes(4, "big") + m for m in SAMPLES["kerberos"][:20])
    dns_stream = b"".join(len(m).to_bytes(2, "big") + m for m in SAMPLES["dns"][:20])
    for stream, make in ((krb_stream, KerberosTcpFramer), (dns_stream, dns.DnsTcpFramer)):
        for mutated in [stream, *_mutations(stream, rng)[:60]]:
            framer = make()
            pos = 0
            while pos < len(mutated):
                size = rng.randint(1, 700)
                for record in framer.feed(mutated[pos : pos + size]):
                    assert len(record) <= 1 << 20
                    if rng.random() < 0.05:
                        framer.gap()
                pos += size
            assert framer.pending <= len(mutated)


def test_tls_inspector_never_raises() -> None:
    rng = random.Random(SEED)
    flights = SAMPLES["tls"] or [b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"]
    for flight in flights:
        for cut in range(0, len(flight), 7):
            inspector = tls.TlsStreamInspector()
            inspector.feed(tls.CLIENT, flight[:cut])
            inspector.feed(tls.SERVER, flight[:cut])
        for mutated in _mutations(flight, rng)[:150]:
            inspector = tls.TlsStreamInspector()
            pos = 0
            while pos < len(mutated):
                size = rng.randint(1, 600)
                inspector.feed(rng.randint(0, 1), mutated[pos : pos + size])
                pos += size
            _ = (inspector.version, inspector.saw_application_data, inspector.certificate_names)


def test_tls_parse_functions_only_raise_malformed() -> None:
    rng = random.Random(SEED)
    for flight in SAMPLES["tls"]:
        pos = 0
        while pos + 9 <= len(flight) and flight[pos] == 22:
            length = int.from_bytes(flight[pos + 3 : pos + 5], "big")
            record = flight[pos + 5 : pos + 5 + length]
            pos += 5 + length
            msg_type, body = record[0], record[4:]
            parser: Callable[[bytes], Any] | None = {
                1: tls.parse_client_hello,
                2: tls.parse_server_hello,
                11: lambda b: [tls.parse_certificate(c) for c in tls.parse_certificate_message(b)],
            }.get(msg_type)
            if parser is None or len(body) != int.from_bytes(record[1:4], "big"):
                continue
            parser(body)
            for cut in range(0, len(body), 5):
                _call(parser, body[:cut])
            for mutated in _mutations(body, rng)[:120]:
                _call(parser, mutated)
