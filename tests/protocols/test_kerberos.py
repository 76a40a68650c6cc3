"""Kerberos decoding: every Kerberos frame of the corpus against expected.json, plus pyasn1-built messages."""

from __future__ import annotations

from collections import defaultdict

import proto_rfc4120 as R
import pytest
from proto_corpus import expected, needs_corpus, tcp_directions, tshark_fields

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import kerberos, spnego
from lyncpcap.protocols.kerberos import KerberosMessage, KerberosTcpFramer

KERBEROS_FILES = [
    "bruteshark/kerberos-v5-udp-3.pcap",
    "bruteshark/kerberos-v5-udp-2.pcap",
    "bruteshark/kerberos-v5-tcp.pcap",
    "suricata-verify/krb5-msg-type.pcap",
    "suricata-verify/kerberoast.pcap",
    "ndpi/kerberos.pcap",
]


def kdc_messages(capture: str) -> tuple[dict[int, list[KerberosMessage]], dict[str, int]]:
    """Every Kerberos message in a capture by frame: UDP/TCP 88, HTTP Negotiate and SMB security blobs."""
    found: dict[int, list[KerberosMessage]] = defaultdict(list)
    stats = {"malformed_records": 0, "framer_malformed": 0}
    for frame, payload in tshark_fields(capture, "udp.port == 88", ("frame.number", "udp.payload")):
        found[int(frame)].append(kerberos.parse(bytes.fromhex(payload)))
    for _key, segments in tcp_directions(capture, "tcp.port == 88 and tcp.len > 0").items():
        framer = KerberosTcpFramer()
        for segment in segments:
            if segment.gap_before:
                framer.gap()
            for record in framer.feed(segment.data):
                try:
                    found[segment.frame].append(kerberos.parse(record))
                except MalformedError:
                    stats["malformed_records"] += 1
        stats["framer_malformed"] += framer.malformed
    rows = tshark_fields(
        capture,
        "http.authorization or http.www_authenticate or smb.security_blob",
        ("frame.number", "http.authorization", "http.www_authenticate", "smb.security_blob"),
    )
    for frame, authorization, www_authenticate, blob in rows:
        tokens = []
        for value in (authorization.split(",") if authorization else []) + (
            www_authenticate.split(",") if www_authenticate else []
        ):
            scheme, _, text = value.strip().partition(" ")
            if scheme == "Negotiate" and text:
                tokens.append(spnego.parse_base64(text))
        if blob:
            tokens.append(spnego.parse(bytes.fromhex(blob)))
        for token in tokens:
            if token.kerberos is not None:
                found[int(frame)].append(token.kerberos)
    return found, stats


def _msg_types(message: KerberosMessage) -> list[int]:
    return [message.msg_type] + ([14] if message.inner_ap_req is not None else [])


@needs_corpus
@pytest.mark.parametrize("capture", KERBEROS_FILES)
def test_every_kerberos_frame_matches_tshark(capture: str) -> None:
    found, _stats = kdc_messages(capture)
    wanted = {entry["frame"]: entry for entry in expected()[capture]["kerberos"]}
    assert sorted(f for f, msgs in found.items() if msgs) == sorted(wanted)
    for frame, entry in wanted.items():
        assert len(found[frame]) == 1, frame
        message = found[frame][0]
        assert _msg_types(message) == entry["msg_types"], frame
        assert message.name == kerberos.MESSAGE_NAMES[message.msg_type]
        assert (message.cname.split("/") if message.cname else []) == entry["cname"], frame
        assert ([message.crealm] if message.crealm else []) == entry["crealm"], frame
        assert ([message.error_code] if message.error_code is not None else []) == entry["error_code"], frame
        snames = [p for p in message.principals if p.kind == "sname"]
        assert [p.realm for p in snames] == entry["realm"], frame
        assert [part for p in snames for part in p.name.split("/")] == entry["sname_strings"], frame
        assert len(message.principals) == len(entry["principals"]), frame
        for ours, theirs in zip(message.principals, entry["principals"], strict=True):
            assert (ours.kind, ours.where, ours.name) == (theirs["kind"], theirs["where"], theirs["name"]), (
                frame
            )
            if message.name == "krb-error" and ours.kind == "cname" and message.crealm is not None:
                # RFC 4120 §5.9.1 pairs a KRB-ERROR cname with crealm; expected.json pairs every name with
                # the sibling `realm` field (the service realm). They differ only for the anonymous
                # PKINIT error in kerberos-v5-tcp.pcap frame 6 (crealm WELLKNOWN:ANONYMOUS).
                assert ours.realm == message.crealm
                assert theirs["realm"] in (message.crealm, message.realm)
            else:
                assert ours.realm == theirs["realm"], frame


@needs_corpus
def test_kerberoast_ticket_is_rc4() -> None:
    found, _ = kdc_messages("suricata-verify/kerberoast.pcap")
    request, reply = found[4][0], found[7][0]
    assert request.name == "tgs-req" and request.sname == "HTTP/dc-mantvydas.offense.local"
    assert request.realm == "OFFENSE.LOCAL"
    assert request.padata_types == (kerberos.PA_TGS_REQ,)
    assert request.inner_ap_req is not None and request.inner_ap_req.sname == "krbtgt/OFFENSE.LOCAL"
    assert 23 in request.etypes and kerberos.ETYPE_NAMES[23] == "rc4-hmac"
    assert reply.name == "tgs-rep" and reply.cname == "spotless" and reply.enc_etype == 23


@needs_corpus
def test_s4u_and_errors_of_udp3() -> None:
    found, _ = kdc_messages("bruteshark/kerberos-v5-udp-3.pcap")
    error = found[30][0]
    assert error.error_name == "KDC_ERR_BADOPTION"
    assert error.nt_status == 0xC0000272 and kerberos.NT_STATUS_NAMES[error.nt_status] == "STATUS_NO_MATCH"
    delegation = found[39][0]
    assert [p.where for p in delegation.principals] == ["ticket", "req_body", "additional_ticket"]
    http = found[19][0]
    assert http.name == "ap-req" and http.sname == "HTTP/upwin2003.denyDC.com" and http.mutual_required
    assert found[66][0].name == "ap-rep"


@needs_corpus
def test_preauth_required_lists_offered_padata() -> None:
    found, _ = kdc_messages("suricata-verify/krb5-msg-type.pcap")
    error = found[9][0]
    assert error.error_name == "KDC_ERR_PREAUTH_REQUIRED"
    assert 2 in error.padata_types and 19 in error.padata_types  # PA-ENC-TIMESTAMP, PA-ETYPE-INFO2
    found, _ = kdc_messages("bruteshark/kerberos-v5-tcp.pcap")
    assert found[6][0].e_text == "NEEDED_PREAUTH"
    assert found[24][0].inner_ap_req is not None  # FAST armour AP-REQ (RFC 6113)
    assert found[24][0].padata_types == (kerberos.PA_FX_FAST,)


@needs_corpus
def test_ndpi_partial_streams_do_not_break_framing() -> None:
    """ndpi/kerberos.pcap has streams captured from the middle and lost segments (63, 64)."""
    found, stats = kdc_messages("ndpi/kerberos.pcap")
    assert stats["framer_malformed"] > 0  # mid-record starts were seen and skipped
    assert sorted(found) == sorted(e["frame"] for e in expected()["ndpi/kerberos.pcap"]["kerberos"])
    assert found[28][0].sname == "johnson-pc$@HAPPYCRAFT.ORG"  # enterprise name, one component


# -- pyasn1-built messages ------------------------------------------------------------------------


def test_as_exchange_round_trip() -> None:
    request = kerberos.parse(
        R.as_req("alice", "CONTOSO.COM", etypes=[18, 17, 23, -135], padata=[(2, b"x"), (128, b"y")])
    )
    assert (request.msg_type, request.name, request.realm, request.cname) == (
        10,
        "as-req",
        "CONTOSO.COM",
        "alice",
    )
    assert request.sname == "krbtgt/CONTOSO.COM"
    assert request.etypes == (18, 17, 23, -135)
    assert request.padata_types == (2, 128)
    assert request.kdc_options == 0x40810010
    assert [(p.kind, p.where) for p in request.principals] == [("cname", "req_body"), ("sname", "req_body")]
    reply = kerberos.parse(R.as_rep("CONTOSO.COM", "alice", ticket_etype=18))
    assert (reply.name, reply.cname, reply.crealm, reply.realm, reply.sname) == (
        "as-rep",
        "alice",
        "CONTOSO.COM",
        "CONTOSO.COM",
        "krbtgt/CONTOSO.COM",
    )
    assert reply.enc_etype == 18 and reply.enc_part_etype == 18 and reply.padata_types == (19,)


def test_tgs_exchange_round_trip() -> None:
    data = R.tgs_req(
        "CONTOSO.COM",
        "HTTP/lyncpool.contoso.com",
        tgt_etype=23,
        additional=[("CONTOSO.COM", "HTTP/web01", 18)],
    )
    request = kerberos.parse(data)
    assert (
        request.name == "tgs-req" and request.sname == "HTTP/lyncpool.contoso.com" and request.cname is None
    )
    assert request.padata_types == (1, 167)
    assert request.inner_ap_req is not None
    assert request.inner_ap_req.name == "ap-req" and request.inner_ap_req.enc_etype == 23
    assert [(p.kind, p.where, p.name) for p in request.principals] == [
        ("sname", "ticket", "krbtgt/CONTOSO.COM"),
        ("sname", "req_body", "HTTP/lyncpool.contoso.com"),
        ("sname", "additional_ticket", "HTTP/web01"),
    ]
    reply = kerberos.parse(R.tgs_rep("CONTOSO.COM", "alice", "HTTP/lyncpool.contoso.com", ticket_etype=23))
    assert reply.name == "tgs-rep" and reply.sname == "HTTP/lyncpool.contoso.com" and reply.enc_etype == 23


def test_ap_messages_round_trip() -> None:
    request = kerberos.parse(R.ap_req("CONTOSO.COM", "sip/fe01.contoso.com", etype=18, mutual=True))
    assert (request.name, request.sname, request.realm, request.enc_etype) == (
        "ap-req",
        "sip/fe01.contoso.com",
        "CONTOSO.COM",
        18,
    )
    assert request.mutual_required is True
    assert kerberos.parse(R.ap_req("CONTOSO.COM", "HTTP/x", mutual=False)).mutual_required is False
    reply = kerberos.parse(R.ap_rep(etype=23))
    assert (reply.name, reply.principals, reply.enc_part_etype) == ("ap-rep", (), 23)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (6, "KDC_ERR_C_PRINCIPAL_UNKNOWN"),
        (7, "KDC_ERR_S_PRINCIPAL_UNKNOWN"),
        (18, "KDC_ERR_CLIENT_REVOKED"),
        (24, "KDC_ERR_PREAUTH_FAILED"),
        (25, "KDC_ERR_PREAUTH_REQUIRED"),
        (37, "KRB_AP_ERR_SKEW"),
    ],
)
def test_krb_error_round_trip(code: int, name: str) -> None:
    data = R.krb_error(
        code,
        "CONTOSO.COM",
        "HTTP/lyncpool.contoso.com",
        cname="alice",
        crealm="CONTOSO.COM",
        e_text=f"text for {code}",
        e_data=R.method_data([2, 19, 16]) if code == 25 else None,
    )
    error = kerberos.parse(data)
    assert (error.msg_type, error.name, error.error_code, error.error_name) == (30, "krb-error", code, name)
    assert (error.e_text, error.cname, error.crealm, error.realm) == (
        f"text for {code}",
        "alice",
        "CONTOSO.COM",
        "CONTOSO.COM",
    )
    assert error.sname == "HTTP/lyncpool.contoso.com"
    assert error.padata_types == ((2, 19, 16) if code == 25 else ())
    assert [(p.kind, p.where) for p in error.principals] == [("cname", "top"), ("sname", "top")]


def test_unknown_error_code_gets_a_name() -> None:
    assert kerberos.parse(R.krb_error(99, "R", "krbtgt/R")).error_name == "KRB_ERR_99"


def test_error_names_cover_rfc4120() -> None:
    rfc_codes = set(range(0, 30)) | set(range(31, 43)) | set(range(44, 53)) | set(range(60, 77))
    assert rfc_codes <= set(kerberos.ERROR_NAMES)
    assert (
        kerberos.ERROR_NAMES[41] == "KRB_AP_ERR_MODIFIED"
        and kerberos.ERROR_NAMES[68] == "KDC_ERR_WRONG_REALM"
    )
    assert kerberos.ERROR_NAMES[52] == "KRB_ERR_RESPONSE_TOO_BIG"
    assert kerberos.ETYPE_NAMES[17] == "aes128-cts-hmac-sha1-96" and kerberos.ETYPE_NAMES[-128] == "rc4-md4"


def test_rejects_what_is_not_kerberos() -> None:
    for data in (b"", b"\x30\x00", b"\x6a\x00", b"\x61\x03\x30\x01\x00", R.as_req("a", "R") + b"\x00"):
        with pytest.raises(MalformedError):
            kerberos.parse(data)
    # msg-type inside must match the APPLICATION tag
    wrong = bytearray(R.ap_rep())
    index = bytes(wrong).index(b"\xa1\x03\x02\x01\x0f")
    wrong[index + 4] = 0x0E
    with pytest.raises(MalformedError):
        kerberos.parse(bytes(wrong))


def test_looks_like_kerberos() -> None:
    udp = R.as_req("alice", "CONTOSO.COM")
    assert kerberos.looks_like_kerberos(udp)
    tcp = len(udp).to_bytes(4, "big") + udp
    assert kerberos.looks_like_kerberos(tcp)
    assert kerberos.looks_like_kerberos(tcp[:10])  # first segment of a record
    assert not kerberos.looks_like_kerberos(udp[:-1])
    assert not kerberos.looks_like_kerberos(b"GET / HTTP/1.1\r\n")
    assert not kerberos.looks_like_kerberos(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")


def test_tcp_framer_splits_and_joins() -> None:
    records = [
        R.as_req("alice", "CONTOSO.COM"),
        R.krb_error(25, "CONTOSO.COM", "krbtgt/CONTOSO.COM"),
        R.as_rep("C", "a"),
    ]
    stream = b"".join(len(r).to_bytes(4, "big") + r for r in records)
    for chunk in (1, 3, 7, 100, len(stream)):
        framer = KerberosTcpFramer()
        out = []
        for i in range(0, len(stream), chunk):
            out += framer.feed(stream[i : i + chunk])
        assert out == records and framer.pending == 0 and framer.malformed == 0


def test_tcp_framer_resynchronises_after_a_gap() -> None:
    first, second = R.as_req("alice", "CONTOSO.COM"), R.tgs_rep("CONTOSO.COM", "alice", "HTTP/x")
    stream = len(first).to_bytes(4, "big") + first + len(second).to_bytes(4, "big") + second
    framer = KerberosTcpFramer()
    assert framer.feed(stream[:30]) == []
    framer.gap()  # the rest of the first record was lost
    out = framer.feed(stream[len(first) - 20 :])
    assert out == [second]
    # garbage without a gap() call is detected by the header checks
    framer = KerberosTcpFramer()
    assert framer.feed(b"\xff" * 50 + stream) == [first, second]
    assert framer.malformed == 1 and framer.skipped_bytes == 50


def test_tcp_framer_rejects_oversized_records() -> None:
    framer = KerberosTcpFramer(max_record=1000)
    big = (5000).to_bytes(4, "big") + b"\x6a\x82\x13\x84" + b"\x00" * 100
    assert framer.feed(big) == []
    assert framer.malformed == 1 and framer.pending < 10
