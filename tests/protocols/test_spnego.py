"""GSS-API / SPNEGO: HTTP Negotiate and SMB tokens of the corpus, pyasn1-built and pyspnego-built tokens."""

from __future__ import annotations

import base64
import os

import proto_rfc4120 as R
import pytest
import spnego
from proto_corpus import needs_corpus, tshark_fields

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import spnego as gss
from lyncpcap.protocols.spnego import GssToken


def header_tokens(capture: str) -> dict[int, list[tuple[str, GssToken]]]:
    out: dict[int, list[tuple[str, GssToken]]] = {}
    rows = tshark_fields(
        capture,
        "http.authorization or http.www_authenticate",
        ("frame.number", "http.authorization", "http.www_authenticate"),
    )
    for frame, authorization, www_authenticate in rows:
        for value in authorization.split(",") + www_authenticate.split(","):
            scheme, _, token = value.strip().partition(" ")
            if token:
                out.setdefault(int(frame), []).append((scheme, gss.parse_base64(token)))
    return out


@needs_corpus
def test_http_negotiate_kerberos_with_mutual_auth() -> None:
    tokens = header_tokens("bruteshark/kerberos-v5-udp-3.pcap")
    ((scheme, request),) = tokens[19]
    assert scheme == "Negotiate"
    assert (request.mechanism, request.framing) == ("kerberos", "spnego-init")
    assert request.mech_types == (gss.OID_MS_KERBEROS, gss.OID_KERBEROS, gss.OID_NTLM)
    assert request.kerberos is not None and request.kerberos.name == "ap-req"
    assert request.kerberos.sname == "HTTP/upwin2003.denyDC.com" and request.kerberos.realm == "DENYDC.COM"
    assert request.kerberos.enc_etype == 23 and request.kerberos.mutual_required
    ((_, reply),) = tokens[66]
    assert (reply.mechanism, reply.framing, reply.neg_state) == (
        "kerberos",
        "spnego-resp",
        "accept-completed",
    )
    assert reply.supported_mech == gss.OID_MS_KERBEROS
    assert reply.kerberos is not None and reply.kerberos.name == "ap-rep"


@needs_corpus
def test_http_negotiate_resp_wrapped_in_initial_context_token() -> None:
    """kerberos-v5-udp-2.pcap frame 22: the server wraps its negTokenResp in 0x60 + SPNEGO OID."""
    tokens = header_tokens("bruteshark/kerberos-v5-udp-2.pcap")
    ((_, reply),) = tokens[22]
    assert (reply.framing, reply.neg_state, reply.mechanism) == (
        "spnego-resp",
        "accept-completed",
        "kerberos",
    )
    assert reply.kerberos is None and reply.supported_mech == gss.OID_KERBEROS
    ((_, request),) = tokens[20]
    assert request.kerberos is not None and request.kerberos.sname == "HTTP/fc4.denyDC.com"


@needs_corpus
def test_negotiate_scheme_with_raw_ntlm() -> None:
    tokens = header_tokens("bruteshark/http-ntlm-gssapi.pcap")
    kinds = [
        (f, t.framing, t.mechanism, t.ntlm.message_type if t.ntlm else None)
        for f in sorted(tokens)
        for _, t in tokens[f]
    ]
    assert kinds == [(8, "raw-ntlm", "ntlm", 1), (10, "raw-ntlm", "ntlm", 2), (12, "raw-ntlm", "ntlm", 3)]
    assert tokens[12][0][1].ntlm is not None and tokens[12][0][1].ntlm.user == "Susan"
    ipv6 = header_tokens("arkime/ntlm_synthetic.pcap")
    assert [t.framing for f in (58, 60, 62) for _, t in ipv6[f]] == ["raw-ntlm"] * 3


@needs_corpus
def test_smb_security_blobs() -> None:
    smb = tshark_fields(
        "bruteshark/kerberos-v5-udp-3.pcap", "smb.security_blob", ("frame.number", "smb.security_blob")
    )
    rows = {frame: blob for frame, blob in smb}
    hints = gss.parse(bytes.fromhex(rows["34"]))  # server NegTokenInit2 in SMB Negotiate Protocol Response
    assert (hints.framing, hints.mechanism, hints.hint_name) == (
        "spnego-init",
        "unknown",
        "vpc-w2k3ent$@DENYDC.COM",
    )
    assert gss.OID_KERBEROS_U2U in hints.mech_types
    session = gss.parse(bytes.fromhex(rows["47"]))
    assert session.kerberos is not None and session.kerberos.sname == "cifs/vpc-w2k3ent.denyDC.com"
    accept = gss.parse(bytes.fromhex(rows["51"]))
    assert accept.kerberos is not None and accept.kerberos.name == "ap-rep"
    ntlm_rows = tshark_fields(
        "arkime/ntlm_synthetic.pcap", "smb.security_blob", ("frame.number", "smb.security_blob")
    )
    framings = {int(f): gss.parse(bytes.fromhex(blob)) for f, blob in ntlm_rows}
    assert framings[16].framing == "spnego-init" and framings[16].mech_types == (gss.OID_NTLM,)
    assert framings[20].framing == "spnego-resp" and framings[20].ntlm is not None
    assert framings[20].ntlm.target_name == "SPNTGT"
    assert framings[22].ntlm is not None and framings[22].ntlm.user == "bob"


# -- built tokens ---------------------------------------------------------------------------------


def test_gss_krb5_ap_req() -> None:
    ap_req = R.ap_req("CONTOSO.COM", "sip/fe01.contoso.com")
    token = gss.parse(R.gss_krb5(b"\x01\x00", ap_req))
    assert (token.mechanism, token.framing, token.mech_types) == ("kerberos", "gss-krb5", ())
    assert token.kerberos is not None and token.kerberos.sname == "sip/fe01.contoso.com"
    legacy = gss.parse(R.gss_krb5(b"\x01\x00", ap_req, oid=R.OID_MS_KRB5))
    assert legacy.kerberos is not None and legacy.mechanism == "kerberos"
    error = gss.parse(R.gss_krb5(b"\x03\x00", R.krb_error(41, "CONTOSO.COM", "HTTP/x")))
    assert error.kerberos is not None and error.kerberos.error_name == "KRB_AP_ERR_MODIFIED"
    with pytest.raises(MalformedError):
        gss.parse(R.gss_krb5(b"\x02\x00", ap_req))  # TOK_ID says AP-REP


def test_spnego_init_and_resp_with_kerberos() -> None:
    inner = R.gss_krb5(b"\x01\x00", R.ap_req("CONTOSO.COM", "HTTP/lyncpool.contoso.com"))
    init = gss.parse(R.neg_token_init([R.OID_MS_KRB5, R.OID_KRB5, R.OID_NTLM], inner))
    assert (init.mechanism, init.framing) == ("kerberos", "spnego-init")
    assert init.mech_types == (R.OID_MS_KRB5, R.OID_KRB5, R.OID_NTLM)
    assert init.kerberos is not None and init.kerberos.sname == "HTTP/lyncpool.contoso.com"
    resp = gss.parse(R.neg_token_resp(0, R.OID_MS_KRB5, R.gss_krb5(b"\x02\x00", R.ap_rep())))
    assert (resp.mechanism, resp.neg_state, resp.supported_mech) == (
        "kerberos",
        "accept-completed",
        R.OID_MS_KRB5,
    )
    assert resp.kerberos is not None and resp.kerberos.name == "ap-rep"
    bare = gss.parse(R.neg_token_resp(0, R.OID_KRB5, R.ap_rep()))  # AP-REP without the krb5 wrapper
    assert bare.kerberos is not None and bare.kerberos.name == "ap-rep"
    rejected = gss.parse(R.neg_token_resp(2, None, None))
    assert (rejected.neg_state, rejected.mechanism) == ("reject", "unknown")
    raw = gss.parse(R.ap_req("CONTOSO.COM", "HTTP/x"))
    assert (raw.framing, raw.mechanism) == ("raw-kerberos", "kerberos")


def test_token_decides_over_first_mech_type() -> None:
    """A NegTokenInit listing Kerberos first but carrying NTLMSSP is NTLM (verify the token itself)."""
    ntlm_negotiate = base64.b64decode("TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==")
    token = gss.parse(R.neg_token_init([R.OID_KRB5, R.OID_NTLM], ntlm_negotiate))
    assert token.mechanism == "ntlm" and token.ntlm is not None and token.ntlm.message_type == 1
    unknown = gss.parse(R.neg_token_init([R.OID_KRB5], b"\x01\x02opaque"))
    assert unknown.mechanism == "kerberos" and unknown.kerberos is None
    no_token = gss.parse(R.neg_token_init([R.OID_NTLM], None))
    assert no_token.mechanism == "unknown"


def test_pyspnego_negotiate_falls_back_to_ntlm(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(str(tmp_path), "users")
    with open(path, "w") as f:
        f.write("CONTOSO:alice:Passw0rd!\n")
    monkeypatch.setenv("NTLM_USER_FILE", path)
    client = spnego.client(
        "CONTOSO\\alice", "Passw0rd!", hostname="lyncpool.contoso.com", protocol="negotiate"
    )
    server = spnego.server(protocol="negotiate")
    t1 = client.step()
    t2 = server.step(t1)
    t3 = client.step(t2)
    t4 = server.step(t3)
    assert t1 and t2 and t3
    first, second, third = gss.parse(t1), gss.parse(t2), gss.parse(t3)
    assert (first.framing, first.mechanism) == ("spnego-init", "ntlm")
    assert gss.OID_NTLM in first.mech_types
    assert second.framing == "spnego-resp" and second.ntlm is not None and second.ntlm.message_type == 2
    assert third.ntlm is not None and third.ntlm.user == "alice" and third.ntlm.ntlm_version == "v2"
    if t4:
        assert gss.parse(t4).neg_state == "accept-completed"


def test_base64_tolerance() -> None:
    text = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw=="
    assert gss.parse_base64(text).ntlm is not None
    assert gss.parse_base64(text.rstrip("=")).ntlm is not None
    assert gss.parse_base64(" " + text[:20] + "\r\n " + text[20:] + "\t").ntlm is not None
    for junk in ("", "   ", "!!!!", "TlRM*TVNT", "A", "TlRM=TVNT"):
        with pytest.raises(MalformedError):
            gss.parse_base64(junk)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x60\x00",
        b"\x60\x03\x06\x01\x00",
        R.initial_context_token("1.2.3.4", b"\x00\x01"),
        R.initial_context_token(R.OID_NTLM, b"not ntlm"),
        b"\xa2\x03\x30\x01\x00",
        b"\x30\x00",
        R.neg_token_resp(7, None, None),
    ],
)
def test_malformed_tokens(data: bytes) -> None:
    with pytest.raises(MalformedError):
        gss.parse(data)
