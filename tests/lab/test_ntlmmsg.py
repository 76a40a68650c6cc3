"""Tests for lyncpcap.lab.ntlmmsg: the responses are real (pyspnego's acceptor accepts them),
deterministic, and tshark reads them inside HTTP."""

from __future__ import annotations

import datetime
import random
from pathlib import Path

import labkit
import pytest
import spnego
from spnego._ntlm_raw.crypto import compute_response_v2, hmac_md5, ntowfv1, ntowfv2
from spnego._ntlm_raw.messages import Authenticate as RawAuthenticate
from spnego._ntlm_raw.messages import AvFlags, AvId, Challenge, NegotiateFlags, NTClientChallengeV2
from spnego.exceptions import SpnegoError

from lyncpcap.lab import ntlmmsg
from lyncpcap.lab.netsim import Network

USER, DOMAIN, PASSWORD, WS = "alice", "CONTOSO", "Passw0rd!", "CLIENT01"
WHEN = datetime.datetime(2024, 3, 5, 9, 0, 0, 123456, tzinfo=datetime.UTC)


def _challenge(rng: random.Random, *, flags_from: bytes | None = None, datagram: bool = False) -> bytes:
    return ntlmmsg.challenge(
        target_name=DOMAIN,
        nb_domain=DOMAIN,
        nb_computer="FE01",
        dns_domain="contoso.com",
        dns_computer="fe01.contoso.com",
        dns_tree="contoso.com",
        timestamp=WHEN,
        rng=rng,
        flags_from=flags_from,
        datagram=datagram,
    )


@pytest.fixture
def acceptor_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "ntlm-users"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))


@pytest.mark.parametrize(("variant", "lm_compat"), [("v2", "3"), ("ntlm2-session", "0"), ("v1", "0")])
def test_pyspnego_acceptor_accepts_every_variant(
    acceptor_env: None, monkeypatch: pytest.MonkeyPatch, variant: str, lm_compat: str
) -> None:
    monkeypatch.setenv("LM_COMPAT_LEVEL", lm_compat)  # the acceptor takes v1 responses only below 5
    server = spnego.server(protocol="ntlm")
    client = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=random.Random(1), variant=variant)
    challenge = server.step(client.negotiate())
    assert challenge is not None
    server.step(client.authenticate(challenge))
    assert server.complete and server.client_principal == f"{DOMAIN}\\{USER}"
    assert server.session_key == client.exported_session_key


def test_pyspnego_acceptor_rejects_a_wrong_password(acceptor_env: None) -> None:
    server = spnego.server(protocol="ntlm")
    client = ntlmmsg.NtlmClient(USER, DOMAIN, "wrong", WS, rng=random.Random(1))
    challenge = server.step(client.negotiate())
    assert challenge is not None
    with pytest.raises(SpnegoError):
        server.step(client.authenticate(challenge))


def test_ntlmv2_response_recomputed_from_the_password() -> None:
    rng = random.Random(5)
    client = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng)
    negotiate = client.negotiate()
    challenge = _challenge(rng, flags_from=negotiate)
    auth = RawAuthenticate.unpack(client.authenticate(challenge, spn="HTTP/lyncweb.contoso.com"))
    nt = auth.nt_challenge_response or b""
    blob = NTClientChallengeV2.unpack(nt[16:])
    assert blob.av_pairs[AvId.target_name] == "HTTP/lyncweb.contoso.com"
    assert blob.av_pairs[AvId.flags] & AvFlags.mic
    server_info = Challenge.unpack(challenge).target_info
    assert server_info is not None and blob.time_stamp.pack() == server_info[AvId.timestamp].pack()
    key = ntowfv2(USER, ntowfv1(PASSWORD), DOMAIN)
    expected, _, _ = compute_response_v2(
        key,
        Challenge.unpack(challenge).server_challenge,
        blob.challenge_from_client,
        blob.time_stamp,
        blob.av_pairs,
    )
    assert nt == expected
    assert auth.lm_challenge_response == b"\x00" * 24
    assert (auth.user_name, auth.domain_name, auth.workstation) == (USER, DOMAIN, WS)
    assert str(auth.version) == "6.1.7601.15"
    in_msg, recomputed = ntlmmsg.nt_proof_str(auth.pack(), challenge, PASSWORD)
    assert in_msg == recomputed
    assert ntlmmsg.nt_proof_str(auth.pack(), challenge, "wrong")[1] != in_msg


def test_explicit_timestamp_overrides_the_server_one() -> None:
    rng = random.Random(6)
    client = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng)
    challenge = _challenge(rng, flags_from=client.negotiate())
    mine = datetime.datetime(2024, 3, 5, 9, 0, 5, tzinfo=datetime.UTC)
    auth = RawAuthenticate.unpack(client.authenticate(challenge, timestamp=mine))
    blob = NTClientChallengeV2.unpack((auth.nt_challenge_response or b"")[16:])
    assert blob.time_stamp.replace(tzinfo=datetime.UTC) == mine


def test_connectionless_exchange_for_sip() -> None:
    rng = random.Random(7)
    challenge = _challenge(rng, datagram=True)
    chal = Challenge.unpack(challenge)
    assert chal.flags & NegotiateFlags.datagram and chal.flags & NegotiateFlags.key_exch
    client = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng)
    raw = client.authenticate(challenge)  # no negotiate() first
    auth = RawAuthenticate.unpack(raw)
    assert auth.flags & NegotiateFlags.datagram and auth.flags & NegotiateFlags.sign
    assert auth.encrypted_random_session_key and len(auth.encrypted_random_session_key) == 16
    # MIC over CHALLENGE ‖ AUTHENTICATE (MIC zeroed) with the exported session key.
    mic = auth.mic
    auth.mic = b"\x00" * 16
    assert client.exported_session_key is not None
    assert mic == hmac_md5(client.exported_session_key, challenge + auth.pack())
    in_msg, recomputed = ntlmmsg.nt_proof_str(raw, challenge, PASSWORD)
    assert in_msg == recomputed


def test_challenge_flags() -> None:
    rng = random.Random(8)
    default = Challenge.unpack(_challenge(rng))
    assert default.flags == 0xA2898205
    v1 = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng, variant="v1")
    answered = Challenge.unpack(_challenge(rng, flags_from=v1.negotiate()))
    assert not answered.flags & NegotiateFlags.extended_session_security
    assert answered.flags & NegotiateFlags.lm_key and answered.flags & NegotiateFlags.target_info
    info = default.target_info
    assert info is not None
    assert [int(k) for k in info] == [2, 1, 4, 3, 5, 7, 0]  # ... MsvAvTimestamp, MsvAvEOL
    assert str(default.version) == "6.3.9600.15" and default.target_name == DOMAIN


def test_ntlm2_session_needs_extended_session_security() -> None:
    rng = random.Random(9)
    v1 = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng, variant="v1")
    challenge = _challenge(rng, flags_from=v1.negotiate())
    ntlm2 = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng, variant="ntlm2-session")
    with pytest.raises(ValueError):
        ntlm2.authenticate(challenge)
    with pytest.raises(ValueError):
        ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng, variant="v3")


def _handshake(seed: int, variant: str = "v2") -> tuple[bytes, bytes, bytes]:
    rng = random.Random(seed)
    client = ntlmmsg.NtlmClient(USER, DOMAIN, PASSWORD, WS, rng=rng, variant=variant)
    t1 = client.negotiate()
    t2 = _challenge(rng, flags_from=t1)
    return t1, t2, client.authenticate(t2)


def test_same_rng_same_bytes() -> None:
    assert _handshake(3) == _handshake(3)
    assert _handshake(3)[2] != _handshake(4)[2]


def test_tshark_reads_each_variant_in_http(tmp_path: Path) -> None:
    net = Network(2, WHEN)
    client = net.host("CLIENT01", "10.0.1.20")
    web = net.host("LYNCWEB", "10.0.0.10")
    expected = {}
    for variant in ("v2", "v1", "ntlm2-session"):
        t1, t2, t3 = _handshake(len(variant), variant)
        conn = net.tcp(client, web, 80)
        for token, answer in ((t1, t2), (t3, None)):
            conn.send(
                labkit.http_request(
                    "GET",
                    "/WebTicket/WebTicketService.svc",
                    "lyncweb.contoso.com",
                    [("Authorization", "NTLM " + labkit.b64(token))],
                )
            )
            if answer is None:
                conn.reply(labkit.http_response(200, "OK"))
            else:
                conn.reply(
                    labkit.http_response(
                        401, "Unauthorized", [("WWW-Authenticate", "NTLM " + labkit.b64(answer))]
                    )
                )
        conn.close()
        expected[conn.index] = (variant, RawAuthenticate.unpack(t3))
    path = tmp_path / "ntlm.pcap"
    net.write_pcap(str(path))
    assert labkit.problems(path) == {}
    rows = labkit.frames_with(
        path,
        "ntlmssp.messagetype == 3",
        [
            "tcp.stream",
            "ntlmssp.auth.username",
            "ntlmssp.auth.domain",
            "ntlmssp.auth.hostname",
            "ntlmssp.ntlmv2_response",
            "ntlmssp.auth.ntresponse",
            "ntlmssp.auth.lmresponse",
        ],
    )
    assert len(rows) == 3
    for row in rows:
        variant, auth = expected[int(row["tcp.stream"][0])]
        assert row["ntlmssp.auth.username"] == [USER]
        assert row["ntlmssp.auth.domain"] == [DOMAIN]
        assert row["ntlmssp.auth.hostname"] == [WS]
        assert ("ntlmssp.ntlmv2_response" in row) == (variant == "v2")
        assert row["ntlmssp.auth.ntresponse"][0] == (auth.nt_challenge_response or b"").hex()
        if variant == "ntlm2-session":
            assert row["ntlmssp.auth.lmresponse"][0].endswith("00" * 16)
    challenges = labkit.frames_with(path, "ntlmssp.messagetype == 2", ["ntlmssp.challenge.target_name"])
    assert [r["ntlmssp.challenge.target_name"] for r in challenges] == [[DOMAIN]] * 3


def test_tshark_reads_the_demo_ntlm(tmp_path: Path) -> None:
    demo = labkit.build_demo()
    path = tmp_path / "demo.pcap"
    demo.net.write_pcap(str(path))
    rows = labkit.frames_with(
        path,
        "ntlmssp",
        [
            "ntlmssp.messagetype",
            "ntlmssp.auth.username",
            "ntlmssp.ntlmv2_response.ntproofstr",
            "http.authorization",
            "http.www_authenticate",
        ],
    )
    assert [r["ntlmssp.messagetype"][0] for r in rows] == ["0x00000001", "0x00000002", "0x00000003"]
    assert rows[0]["http.authorization"][0].startswith("NTLM TlRMTVNTUAAB")
    assert rows[1]["http.www_authenticate"][0].startswith("NTLM TlRMTVNTUAAC")
    proof, recomputed = ntlmmsg.nt_proof_str(demo.ntlm_authenticate, demo.ntlm_challenge, labkit.PASSWORD)
    assert rows[2]["ntlmssp.ntlmv2_response.ntproofstr"] == [proof.hex()] and proof == recomputed
