"""Tests for lyncpcap.lab.krb5: canonical DER, message structure, and tshark's reading of it."""

from __future__ import annotations

import datetime
import random
from pathlib import Path

import labkit
import pytest

from lyncpcap.lab import krb5

STIME = datetime.datetime(2024, 3, 5, 9, 0, 1, 250000, tzinfo=datetime.UTC)
TILL = datetime.datetime(2037, 9, 13, 2, 48, 5, tzinfo=datetime.UTC)


def parse_der(data: bytes, pos: int = 0, end: int | None = None) -> list[tuple[int, bytes, list]]:  # type: ignore[type-arg]
    """A strict DER reader: minimal lengths, minimal INTEGERs, DER BOOLEANs, no trailing bytes.
    Returns [(tag, content, children)] where children are parsed for constructed tags."""
    end = len(data) if end is None else end
    out = []
    while pos < end:
        tag = data[pos]
        assert tag & 0x1F != 0x1F, "high tag numbers are not used here"
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            assert 0 < n <= 4
            length = int.from_bytes(data[pos : pos + n], "big")
            assert data[pos] != 0 and length >= 0x80, "length not in its shortest form"
            pos += n
        content = data[pos : pos + length]
        assert len(content) == length, "content runs past the end"
        children = parse_der(data, pos, pos + length) if tag & 0x20 else []
        if tag == 0x02:
            assert length >= 1
            if length > 1:
                assert not (content[0] == 0 and content[1] < 0x80), "INTEGER not minimal"
                assert not (content[0] == 0xFF and content[1] >= 0x80), "INTEGER not minimal"
        if tag == 0x01:
            assert content in (b"\x00", b"\xff")
        if tag == 0x18:
            text = content.decode()
            datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        out.append((tag, content, children))
        pos += length
    assert pos == end
    return out


def _fields(node: tuple[int, bytes, list]) -> dict[int, tuple[int, bytes, list]]:  # type: ignore[type-arg]
    """Context-tagged fields of a SEQUENCE node, by tag number (each holds one element)."""
    (seq,) = node[2]
    assert seq[0] == 0x30
    return {child[0] & 0x1F: child[2][0] for child in seq[2]}


def _int(node: tuple[int, bytes, list]) -> int:  # type: ignore[type-arg]
    assert node[0] == 0x02
    return int.from_bytes(node[1], "big", signed=True)


def _messages(rng: random.Random) -> dict[str, bytes]:
    return {
        "as_req": krb5.as_req("alice", "CONTOSO.COM", preauth=True, nonce=0x7FFFFFFF, till=TILL, rng=rng),
        "as_req_nopa": krb5.as_req("alice", "CONTOSO.COM", preauth=False, nonce=1, till=TILL, rng=rng),
        "as_rep": krb5.as_rep("alice", "CONTOSO.COM", rng=rng),
        "tgs_req": krb5.tgs_req(
            "alice", "CONTOSO.COM", "HTTP/lyncpool.contoso.com", nonce=0x80000000, rng=rng
        ),
        "tgs_rep": krb5.tgs_rep("alice", "CONTOSO.COM", "sip/fe01.contoso.com", rng=rng),
        "ap_req": krb5.ap_req("CONTOSO.COM", "HTTP/lyncpool.contoso.com", rng=rng),
        "ap_rep": krb5.ap_rep(rng=rng),
        "error25": krb5.krb_error(25, "CONTOSO.COM", "krbtgt/{realm}", cname="alice", stime=STIME),
        "error24": krb5.krb_error(
            24, "CONTOSO.COM", "krbtgt/CONTOSO.COM", cname="alice", stime=STIME, e_text="bad password"
        ),
        "spnego_init": krb5.spnego_init(krb5.ap_req("CONTOSO.COM", "HTTP/x.contoso.com", rng=rng)),
        "spnego_resp": krb5.spnego_resp(response_token=krb5.ap_rep(rng=rng)),
        "gss": krb5.gss_krb5(krb5.ap_req("CONTOSO.COM", "sip/fe01.contoso.com", rng=rng)),
    }


def test_every_message_is_canonical_der() -> None:
    for name, msg in _messages(random.Random(3)).items():
        if name == "gss":
            # InitialContextToken: only the header and the OID are DER; TOK_ID and the message follow.
            oid = krb5.der_oid(krb5.KRB5_OID)
            assert msg[0] == 0x60 and msg[1] == 0x82 and msg[4 : 4 + len(oid)] == oid
            assert int.from_bytes(msg[2:4], "big") == len(msg) - 4
            msg = msg[4 + len(oid) + 2 :]
        nodes = parse_der(msg)
        assert len(nodes) == 1, name


def test_der_primitives() -> None:
    assert krb5.der_int(0) == b"\x02\x01\x00"
    assert krb5.der_int(127) == b"\x02\x01\x7f"
    assert krb5.der_int(128) == b"\x02\x02\x00\x80"
    assert krb5.der_int(-129) == b"\x02\x02\xff\x7f"
    assert krb5.der_int(0xFFFFFFFF) == b"\x02\x05\x00\xff\xff\xff\xff"
    assert krb5.der_length(200) == b"\x81\xc8" and krb5.der_length(0x1234) == b"\x82\x12\x34"
    assert krb5.der_oid("1.2.840.113554.1.2.2") == bytes.fromhex("06092a864886f712010202")
    assert krb5.der_oid("1.3.6.1.5.5.2") == bytes.fromhex("06062b0601050502")
    assert krb5.der_time(datetime.datetime(2024, 1, 2, 3, 4, 5)) == b"\x18\x0f20240102030405Z"
    assert krb5.der_bits32(krb5.KDC_OPTIONS_AS) == bytes.fromhex("03050040810010")


def test_as_req_structure() -> None:
    msg = _messages(random.Random(4))["as_req"]
    (root,) = parse_der(msg)
    assert root[0] == 0x6A  # [APPLICATION 10]
    f = _fields(root)
    assert _int(f[1]) == 5 and _int(f[2]) == 10
    padata = f[3][2]
    types = [_int(p[2][0][2][0]) for p in padata]
    assert types == [krb5.PA_ENC_TIMESTAMP, krb5.PA_PAC_REQUEST]
    body = {c[0] & 0x1F: c[2][0] for c in f[4][2]}
    assert body[0][1] == bytes.fromhex("0040810010")
    assert [_int(e) for e in body[8][2]] == [18, 17, 23]
    assert _int(body[7]) == 0x7FFFFFFF
    enc_ts = parse_der(padata[0][2][1][2][0][1])[0]  # padata-value holds EncryptedData
    ef = {c[0] & 0x1F: c[2][0] for c in enc_ts[2]}
    assert _int(ef[0]) == 18 and len(ef[2][1]) == 56  # 28-byte PA-ENC-TS-ENC + 28 bytes of AES


def test_error_25_carries_etype_info2() -> None:
    msg = _messages(random.Random(5))["error25"]
    f = _fields(parse_der(msg)[0])
    assert _int(f[6]) == 25 and _int(f[5]) == 250000
    method_data = parse_der(f[12][1])[0]
    first = method_data[2][0]
    assert _int(first[2][0][2][0]) == krb5.PA_ETYPE_INFO2
    info = parse_der(first[2][1][2][0][1])[0]
    salts = [e[2][1][2][0][1] if len(e[2]) > 1 else None for e in info[2]]
    assert salts == [b"CONTOSO.COMalice", None]


def test_cipher_lengths_follow_the_etype() -> None:
    rng = random.Random(1)
    assert len(parse_der(krb5.encrypted_data(18, 100, rng))[0][2][1][2][0][1]) == 128
    assert len(parse_der(krb5.encrypted_data(23, 100, rng))[0][2][1][2][0][1]) == 124
    assert len(parse_der(krb5.encrypted_data(3, 100, rng))[0][2][1][2][0][1]) == 104 + 24
    with_kvno = _fields((0, b"", [parse_der(krb5.encrypted_data(18, 10, rng, kvno=7))[0]]))
    assert _int(with_kvno[1]) == 7


def test_same_rng_same_bytes() -> None:
    assert _messages(random.Random(9)) == _messages(random.Random(9))
    assert _messages(random.Random(9)) != _messages(random.Random(10))


def test_gss_and_spnego_wrapping() -> None:
    rng = random.Random(2)
    req = krb5.ap_req("CONTOSO.COM", "HTTP/x", rng=rng)
    gss = krb5.gss_krb5(req)
    assert gss[0] == 0x60 and krb5.der_oid(krb5.KRB5_OID) + b"\x01\x00" + req in gss
    init = krb5.spnego_init(req)
    assert init == krb5.spnego_init(gss)  # a bare AP-REQ is wrapped the same way
    assert init.startswith(b"\x60") and krb5.der_oid(krb5.SPNEGO_OID) in init[:12]
    resp = krb5.spnego_resp(
        "accept-incomplete", supported_mech=krb5.NTLMSSP_OID, response_token=b"NTLMSSP\x00"
    )
    f = {c[0] & 0x1F: c[2][0] for c in parse_der(resp)[0][2][0][2]}
    assert f[0][1] == b"\x01" and f[2][1] == b"NTLMSSP\x00"
    with pytest.raises(ValueError):
        krb5.spnego_resp("maybe")


def test_tcp_record() -> None:
    assert krb5.tcp_record(b"\x6a\x00") == b"\x00\x00\x00\x02\x6a\x00"


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("krb") / "demo.pcap"
    labkit.build_demo().net.write_pcap(str(path))
    return path


def test_tshark_reads_the_kdc_exchanges(demo_pcap: Path) -> None:
    rows = labkit.frames_with(
        demo_pcap,
        "kerberos && !http",
        [
            "kerberos.msg_type",
            "kerberos.CNameString",
            "kerberos.realm",
            "kerberos.SNameString",
            "kerberos.error_code",
            "udp.srcport",
            "tcp.srcport",
        ],
    )
    got = [
        (
            r["kerberos.msg_type"],
            r.get("kerberos.CNameString", []),
            r.get("kerberos.SNameString", []),
            r.get("kerberos.error_code", []),
            "udp.srcport" in r,
        )
        for r in rows
    ]
    assert got == [
        (["10"], ["alice"], ["krbtgt", "CONTOSO.COM"], [], True),
        (["30"], ["alice"], ["krbtgt", "CONTOSO.COM"], ["25"], True),
        (["10"], ["alice"], ["krbtgt", "CONTOSO.COM"], [], True),
        (["11"], ["alice"], ["krbtgt", "CONTOSO.COM"], [], True),
        (["12", "14"], [], ["krbtgt", "CONTOSO.COM", "HTTP", "lyncweb.contoso.com"], [], True),
        (["13"], ["alice"], ["HTTP", "lyncweb.contoso.com"], [], True),
        (["12", "14"], [], ["krbtgt", "CONTOSO.COM", "sip", "pool01.contoso.com"], [], False),
        (["13"], ["alice"], ["sip", "pool01.contoso.com"], [], False),
        (["12", "14"], [], ["krbtgt", "CONTOSO.COM", "HTTP", "missing.contoso.com"], [], False),
        (["30"], [], ["HTTP", "missing.contoso.com"], ["7"], False),
    ]
    assert all(set(r["kerberos.realm"]) == {"CONTOSO.COM"} for r in rows)


def test_tshark_reads_spnego_in_http(demo_pcap: Path) -> None:
    rows = labkit.frames_with(
        demo_pcap,
        "http && kerberos",
        [
            "kerberos.msg_type",
            "kerberos.SNameString",
            "spnego.negResult",
            "spnego.MechType",
            "http.authorization",
        ],
    )
    assert len(rows) == 2
    assert rows[0]["kerberos.msg_type"] == ["14"]
    assert rows[0]["kerberos.SNameString"] == ["HTTP", "lyncweb.contoso.com"]
    assert rows[0]["http.authorization"][0].startswith("Negotiate YII")
    assert rows[1]["kerberos.msg_type"] == ["15"] and rows[1]["spnego.negResult"] == ["0"]
