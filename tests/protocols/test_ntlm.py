"""NTLM decoding: every NTLMSSP message of the corpus against expected.json, plus pyspnego-built messages."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
import spnego
from proto_corpus import expected, needs_corpus, tshark_fields
from spnego._ntlm_raw import messages as ref

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import ntlm
from lyncpcap.protocols import spnego as gss
from lyncpcap.protocols.ntlm import AvId, NegotiateFlags, NtlmMessage

NTLM_FILES = [
    "zeek/erspan.pcap",
    "ndpi/webdav.pcap",
    "arkime/ntlm_synthetic.pcap",
    "bruteshark/http-ntlm.pcap",
    "bruteshark/http-ntlm-gssapi.pcap",
]


def _from_header(value: str) -> NtlmMessage | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme not in ("NTLM", "Negotiate") or not token:
        return None
    return gss.parse_base64(token).ntlm


def corpus_ntlm(capture: str) -> dict[int, list[NtlmMessage]]:
    """NTLMSSP messages by frame: from HTTP auth headers, else found by signature in the TCP payload."""
    out: dict[int, list[NtlmMessage]] = {}
    rows = tshark_fields(
        capture, "ntlmssp", ("frame.number", "http.authorization", "http.www_authenticate", "tcp.payload")
    )
    for frame, authorization, www_authenticate, payload in rows:
        values = [v for v in (authorization.split(",") + www_authenticate.split(",")) if v.strip()]
        found = [m for m in (_from_header(v) for v in values) if m is not None]
        if not found and payload:
            data = bytes.fromhex(payload)
            found = [ntlm.parse(data[data.index(ntlm.NTLMSSP_SIGNATURE) :])]
        out[int(frame)] = found
    return out


@needs_corpus
@pytest.mark.parametrize("capture", NTLM_FILES)
def test_every_ntlmssp_frame_matches_tshark(capture: str) -> None:
    found = corpus_ntlm(capture)
    wanted = expected()[capture]["ntlmssp"]
    assert sorted(found) == sorted(e["frame"] for e in wanted)
    for entry in wanted:
        (message,) = found[entry["frame"]]
        assert [message.message_type] == entry["message_types"]
        if message.message_type == 2:
            assert message.target_name == entry["challenge_target_name"]
        if message.message_type == 3:
            assert (message.user, message.domain, message.workstation) == (
                entry["user"],
                entry["domain"],
                entry["workstation"],
            )
            assert (message.ntlm_version == "v2") is entry["ntlmv2"]
            assert message.ntlm_version is not None


@needs_corpus
def test_erspan_windows7_handshake_details() -> None:
    found = corpus_ntlm("zeek/erspan.pcap")
    negotiate, challenge, authenticate = found[100][0], found[101][0], found[102][0]
    assert negotiate.version == "6.1.7601" and negotiate.domain is None
    assert negotiate.flags & NegotiateFlags.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
    assert challenge.target_info == {
        "nb_domain": "SP",
        "nb_computer": "TFDSP",
        "dns_domain": "sp.local",
        "dns_computer": "TFDSP.sp.local",
        "dns_tree": "sp.local",
        "timestamp": "2015-09-15T20:39:38.139125Z",
    }
    assert authenticate.ntlm_version == "v2" and authenticate.mic_present
    assert authenticate.nt_response_len == 280 and authenticate.lm_response_len == 24
    assert authenticate.client_info["target_name"] == "HTTP/192.168.69.2"
    assert authenticate.client_info["flags"] == "0x00000002"


@needs_corpus
def test_http_ntlm_is_ntlm2_session_response() -> None:
    messages = [m for msgs in corpus_ntlm("bruteshark/http-ntlm.pcap").values() for m in msgs]
    type3 = [m for m in messages if m.message_type == 3]
    assert len(type3) == 7
    assert {m.ntlm_version for m in type3} == {"ntlm2-session"}
    assert all(m.version == "5.1.2600" and not m.mic_present for m in type3)


@needs_corpus
def test_arkime_mail_protocols_carry_ntlm_tshark_does_not_count() -> None:
    """SMTP/IMAP/POP3 AUTH NTLM lines in the synthetic capture (absent from expected.json)."""
    users = []
    for _frame, payload in tshark_fields(
        "arkime/ntlm_synthetic.pcap", "smtp or pop or imap", ("frame.number", "tcp.payload")
    ):
        token = bytes.fromhex(payload).decode("ascii").split()[-1]
        if token.startswith("TlRM"):
            message = ntlm.parse(base64.b64decode(token))
            if message.message_type == 3:
                users.append((message.user, message.domain, message.workstation, message.ntlm_version))
            if message.message_type == 1:
                assert message.domain is not None and message.domain.endswith("DOM")
    assert users == [
        ("jack", "SMTPDOM", "SMTPHOST", "v1"),
        ("kate", "IMAPDOM", "IMAPHOST", "v1"),
        ("liam", "POP3DOM", "POP3HOST", "v1"),
    ]


# -- pyspnego as the reference implementation -----------------------------------------------------


@pytest.fixture
def ntlm_user_file(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(str(tmp_path), "users")
    with open(path, "w") as f:
        f.write("CONTOSO:alice:Passw0rd!\n")
    monkeypatch.setenv("NTLM_USER_FILE", path)


def test_pyspnego_ntlmv2_exchange(ntlm_user_file: None) -> None:
    client = spnego.client(
        "CONTOSO\\alice", "Passw0rd!", hostname="lyncpool.contoso.com", service="HTTP", protocol="ntlm"
    )
    server = spnego.server(protocol="ntlm")
    t1 = client.step()
    t2 = server.step(t1)
    t3 = client.step(t2)
    server.step(t3)
    assert server.complete and t1 and t2 and t3
    negotiate, challenge, authenticate = (ntlm.parse(t) for t in (t1, t2, t3))
    assert (negotiate.message_type, challenge.message_type, authenticate.message_type) == (1, 2, 3)
    assert negotiate.flags & NegotiateFlags.NTLMSSP_NEGOTIATE_UNICODE
    assert challenge.target_info["nb_domain"] and "timestamp" in challenge.target_info
    assert (authenticate.user, authenticate.domain) == ("alice", "CONTOSO")
    assert authenticate.ntlm_version == "v2" and authenticate.mic_present
    assert authenticate.client_info["target_name"] == "HTTP/lyncpool.contoso.com"
    assert authenticate.nt_response_len > 24


def _version() -> ref.Version:
    return ref.Version(major=10, minor=0, build=19041)


def _authenticate(flags: int, lm: bytes, nt: bytes, user: str = "bob", encoding: str | None = None) -> bytes:
    message = ref.Authenticate(
        flags=flags,
        lm_challenge_response=lm,
        nt_challenge_response=nt,
        domain_name="CONTOSO" if user else "",
        username=user,
        workstation="WS01" if user else "",
        encrypted_session_key=b"\x11" * 16,
        version=_version(),
        encoding=encoding,
    )
    return message.pack()


BASE_FLAGS = (
    ref.NegotiateFlags.unicode
    | ref.NegotiateFlags.ntlm
    | ref.NegotiateFlags.request_target
    | ref.NegotiateFlags.version
    | ref.NegotiateFlags.key_exch
)


@pytest.mark.parametrize(
    ("flags", "lm", "nt", "user", "want"),
    [
        (BASE_FLAGS, b"\x01" * 24, b"\x02" * 24, "bob", "v1"),
        (
            BASE_FLAGS | ref.NegotiateFlags.extended_session_security,
            b"\x03" * 8 + b"\x00" * 16,
            b"\x04" * 24,
            "bob",
            "ntlm2-session",
        ),
        (BASE_FLAGS | ref.NegotiateFlags.extended_session_security, b"\x03" * 24, b"\x04" * 24, "bob", "v1"),
        (BASE_FLAGS, b"\x05" * 24, b"", "bob", "v1"),
        (BASE_FLAGS | ref.NegotiateFlags.anonymous, b"\x00", b"", "", "anonymous"),
        (BASE_FLAGS | ref.NegotiateFlags.anonymous, b"", b"", "", "anonymous"),
    ],
)
def test_response_kinds(flags: int, lm: bytes, nt: bytes, user: str, want: str) -> None:
    message = ntlm.parse(_authenticate(flags, lm, nt, user))
    assert message.ntlm_version == want
    assert (message.lm_response_len, message.nt_response_len) == (len(lm), len(nt))
    assert message.user == user and message.version == "10.0.19041"
    assert not message.mic_present


def test_oem_strings() -> None:
    flags = (BASE_FLAGS & ~ref.NegotiateFlags.unicode) | ref.NegotiateFlags.oem
    message = ntlm.parse(_authenticate(flags, b"\x01" * 24, b"\x02" * 24, encoding="cp437"))
    assert (message.user, message.domain, message.workstation) == ("bob", "CONTOSO", "WS01")
    assert not message.flags & NegotiateFlags.NTLMSSP_NEGOTIATE_UNICODE


def test_negotiate_and_challenge_from_reference() -> None:
    flags = (
        BASE_FLAGS | ref.NegotiateFlags.oem_domain_name_supplied | ref.NegotiateFlags.oem_workstation_supplied
    )
    negotiate = ntlm.parse(
        ref.Negotiate(flags=flags, domain_name="CONTOSO", workstation="WS01", version=_version()).pack()
    )
    assert (negotiate.message_type, negotiate.domain, negotiate.workstation) == (1, "CONTOSO", "WS01")
    assert negotiate.flags & NegotiateFlags.NTLMSSP_NEGOTIATE_OEM_DOMAIN_SUPPLIED
    info = ref.TargetInfo()
    info[ref.AvId.nb_domain_name] = "CONTOSO"
    info[ref.AvId.nb_computer_name] = "FE01"
    info[ref.AvId.dns_domain_name] = "contoso.com"
    info[ref.AvId.dns_computer_name] = "fe01.contoso.com"
    info[ref.AvId.dns_tree_name] = "contoso.com"
    info[ref.AvId.timestamp] = ref.FileTime.from_datetime(datetime(2014, 2, 20, 10, 0, 0, tzinfo=UTC))
    challenge_flags = BASE_FLAGS | ref.NegotiateFlags.target_info | ref.NegotiateFlags.target_type_domain
    data = ref.Challenge(
        flags=challenge_flags,
        server_challenge=b"\x01" * 8,
        target_name="CONTOSO",
        target_info=info,
        version=_version(),
    ).pack()
    challenge = ntlm.parse(data)
    assert challenge.target_name == "CONTOSO"
    assert challenge.target_info == {
        "nb_domain": "CONTOSO",
        "nb_computer": "FE01",
        "dns_domain": "contoso.com",
        "dns_computer": "fe01.contoso.com",
        "dns_tree": "contoso.com",
        "timestamp": "2014-02-20T10:00:00Z",
    }
    assert challenge.flags & NegotiateFlags.NTLMSSP_TARGET_TYPE_DOMAIN


def test_flag_and_av_names_follow_ms_nlmp() -> None:
    assert NegotiateFlags.NTLMSSP_NEGOTIATE_56 == 0x80000000
    assert NegotiateFlags.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY == 0x00080000
    assert NegotiateFlags.NTLMSSP_NEGOTIATE_VERSION == 0x02000000
    assert AvId.MsvAvChannelBindings == 10 and AvId.MsvAvTargetName == 9
    assert int(NegotiateFlags(0xFFFFFFFF)) == 0xFFFFFFFF  # reserved bits survive


def test_minimal_old_messages() -> None:
    # 16-byte NEGOTIATE (no domain/workstation fields) and a 32-byte CHALLENGE (no target info)
    assert ntlm.parse(ntlm.NTLMSSP_SIGNATURE + b"\x01\x00\x00\x00\x07\x82\x08\xa2").message_type == 1
    old = (
        ntlm.NTLMSSP_SIGNATURE
        + b"\x02\x00\x00\x00"
        + b"\x00\x00\x00\x00\x20\x00\x00\x00"
        + b"\x01\x02\x00\x00"
        + b"\x11" * 8
    )
    challenge = ntlm.parse(old)
    assert challenge.target_name is None and challenge.target_info == {}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"NTLMSSP\x00",
        b"NTLMSSQ\x00\x01\x00\x00\x00\x00\x00\x00\x00",
        ntlm.NTLMSSP_SIGNATURE + b"\x04\x00\x00\x00" + b"\x00" * 40,
        ntlm.NTLMSSP_SIGNATURE + b"\x03\x00\x00\x00" + b"\x00" * 20,
        # CHALLENGE whose TargetName points past the end
        ntlm.NTLMSSP_SIGNATURE
        + b"\x02\x00\x00\x00"
        + b"\x08\x00\x08\x00\x30\x00\x00\x00"
        + b"\x01\x00\x00\x00"
        + b"\x00" * 16,
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        ntlm.parse(data)


def test_odd_unicode_length_is_malformed() -> None:
    data = bytearray(_authenticate(BASE_FLAGS, b"\x01" * 24, b"\x02" * 24))
    data[36] = 3  # UserNameLen 3 with Unicode set
    with pytest.raises(MalformedError):
        ntlm.parse(bytes(data))
