"""TLS decryption through tshark: the corpus decryption checks, the lab's TLS twins against their
plaintext truth, partial keys, RSA keys, unsupported ciphers, and a missing or old tshark."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, ROOT, SAMPLES, truth_path
from truth import differences, load

import lyncpcap
from lyncpcap import heldsteps
from lyncpcap.errors import CaptureError
from lyncpcap.flows.pdus import PduStreams
from lyncpcap.lab import lync, tlssim
from lyncpcap.lab.build import build_one
from lyncpcap.lab.netsim import Network
from lyncpcap.lab.pcapwriter import write_pcapng
from lyncpcap.lab.scenarios import CATALOGUE, Spec
from lyncpcap.model import Step
from lyncpcap.read import open_capture
from lyncpcap.read import tshark as tshark_module
from lyncpcap.read.pdu import LINKTYPE_WIRESHARK_UPPER_PDU, build_exported_pdu, parse_exported_pdu
from lyncpcap.read.tshark import ExportRun, KeyLog, RsaKey, _follow_pcapng, find_tshark

EXTERNAL_TLS = SAMPLES / "02-desktop-external-ntlm-tls.pcapng"
EXTERNAL_KEYLOG = SAMPLES / "02-desktop-external-ntlm-tls.keylog"
MOBILE_DSB = SAMPLES / "08-ucwa-mobile-oauth-tls.pcapng"
WEB_FQDN = "lyncweb.contoso.com"


def decryption_check(file: str) -> dict[str, Any]:
    checks = json.loads((CORPUS / "expected.json").read_text())["decryption_checks"]
    return next(c for c in checks if c["file"] == file and not c["keylog"].startswith("DSB"))


def tls_steps(a: lyncpcap.Analysis) -> list[tuple[int, str | None, str | None, int | str | None]]:
    return [(s.frame, s.method, s.url, s.status) for s in a.step_list if s.transport == "tls"]


# ------------------------------------------------------------------------------------------------
# the corpus (expected.json decryption_checks)
# ------------------------------------------------------------------------------------------------


def test_zeek_tls12_decrypts_to_the_request_tshark_shows(tshark: str, corpus: Path) -> None:
    check = decryption_check("zeek/tls12-decryption.pcap")
    (req_frame, method, host, uri, _), (_, _, _, _, status) = check["with_keys"]
    a = lyncpcap.analyze(corpus / check["file"], keylog=corpus / check["keylog"])
    assert tls_steps(a) == [(req_frame, method, f"https://{host}{uri}", status)]
    assert a.captures[0].decrypted and a.captures[0].warnings == []
    [conn] = a.tls_list
    assert conn.decrypted and conn.sni == "heise.de"


def test_zeek_stream_keylog_records_across_segments(tshark: str, corpus: Path) -> None:
    """16 keep-alive requests on one connection, TLS records spanning TCP segments."""
    check = decryption_check("zeek/tls-1.2-stream-keylog.pcap")
    facts = EXPECTED_FILES[f"{check['file']} (with {check['keylog']})"]
    a = lyncpcap.analyze(corpus / check["file"], keylog=corpus / check["keylog"])
    steps = [s for s in a.step_list if s.transport == "tls"]
    assert [s.frame for s in steps] == [r["frame"] for r in facts["http_requests"]]
    assert [s.url for s in steps] == [f"https://{r['host']}{r['uri']}" for r in facts["http_requests"]]
    assert {s.conn for s in steps} == {0}
    answer = {r["request_in"][0]: r["status"][0] for r in facts["http_responses"]}
    assert [s.status for s in steps] == [answer[s.frame] for s in steps]
    statuses = [s.status for s in steps]
    assert statuses.count(200) == 14 and statuses.count(304) == 2


EXPECTED_FILES: dict[str, Any] = (
    json.loads((CORPUS / "expected.json").read_text())["files"] if (CORPUS / "expected.json").exists() else {}
)


@pytest.mark.parametrize("version", ["tls12", "tls13"])
def test_illustrated_tls_ping_pong_is_decrypted_in_its_frames(version: str, tshark: str, corpus: Path, tmp_path: Path) -> None:
    """TLS 1.2 and 1.3 (key-log labels CLIENT_RANDOM vs *_TRAFFIC_SECRET_0), DLT_NULL, IPv6/IPv4,
    ports without a registered protocol: the plaintext bytes reach the flows in their frames."""
    check = decryption_check(f"illustrated-tls/{version}-capture.pcap")
    capture, keylog = corpus / check["file"], corpus / check["keylog"]
    run = ExportRun(find_tshark(), capture, tmp_path, keylog, ())
    seen: list[tuple[int, int, bytes]] = []

    class Recorder:
        done = False

        def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
            seen.append((frame, direction, data))

        def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
            raise AssertionError("no gap expected")

        def on_close(self, ts: float, frame: int, how: str) -> None:
            pass

    streams = PduStreams(lambda conn, direction, first, *, transport="tcp": Recorder())
    for frame, ts, linktype, data in run.frames():
        assert linktype == LINKTYPE_WIRESHARK_UPPER_PDU
        pdu = parse_exported_pdu(data)
        assert pdu.src and pdu.dst and pdu.src_port and pdu.dst_port
        streams.tcp(pdu.orig_frame or frame, ts, pdu.src, pdu.src_port, pdu.dst, pdu.dst_port, pdu.payload, transport="tls")
    assert run.wait() is None
    # the same PDUs as the finished file holds, read by the capture reader
    with open_capture(run.output) as pdus:
        assert [parse_exported_pdu(d).orig_frame for _, _, _, d, _ in pdus] == [f for f, _, _ in seen]
    want = [(frame, bytes.fromhex(hexdata)) for frame, hexdata, _ in check["with_keys"]]
    assert [(f, d) for f, _, d in seen] == want
    assert [d for _, d, _ in seen] == [0, 1]  # ping from the client, pong from the server
    a = lyncpcap.analyze(capture, keylog=keylog)
    assert [t.decrypted for t in a.tls_list] == [True]
    assert not a.step_list  # ping/pong is neither HTTP nor SIP


def test_tshark_without_the_speed_options_is_run_without_them(tshark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another tshark may name its heuristic dissectors differently: it refuses the option, and
    the export runs again without it."""
    monkeypatch.setattr(tshark_module, "SPEED_OPTIONS", ("--disable-heuristic", "no_such_heuristic_xyz"))
    a = lyncpcap.analyze(EXTERNAL_TLS, keylog=EXTERNAL_KEYLOG)
    assert not differences(a, load(truth_path(EXTERNAL_TLS))) and a.captures[0].warnings == []


@pytest.mark.parametrize("nanoseconds", [False, True])
def test_output_is_followed_while_tshark_writes_it(tmp_path: Path, nanoseconds: bool) -> None:
    """Blocks arrive in pieces; each is taken once whole, timestamps follow if_tsresol."""
    frames = [(1392883925.123456 + i, build_exported_pdu(bytes([i]) * (i * 37 % 300), src="10.0.0.1", dst="10.0.0.2",
                                                         port_type=2, src_port=1000 + i, dst_port=443, orig_frame=i))
              for i in range(1, 60)]
    whole = tmp_path / "whole.pcapng"
    write_pcapng(whole, frames, LINKTYPE_WIRESHARK_UPPER_PDU, tsresol_ns=nanoseconds)
    data = whole.read_bytes()
    growing = tmp_path / "growing.pcapng"
    growing.write_bytes(b"")
    done = threading.Event()

    def writer() -> None:
        with open(growing, "ab", buffering=0) as out:
            for i in range(0, len(data), 997):
                out.write(data[i : i + 997])
                time.sleep(0.0005)
        done.set()

    thread = threading.Thread(target=writer)
    run = types.SimpleNamespace(damaged=None)
    thread.start()
    with open(growing, "rb") as f:
        got = list(_follow_pcapng(f, lambda: not done.is_set(), 0.0002, run))  # type: ignore[arg-type]
    thread.join()
    assert run.damaged is None
    with open_capture(whole) as cap:
        want = [(n, ts, lt, d) for n, ts, lt, d, _ in cap]
    assert [(n, lt, d) for n, _, lt, d in got] == [(n, lt, d) for n, _, lt, d in want]
    assert [ts for _, ts, _, _ in got] == pytest.approx([ts for _, ts, _, _ in want], abs=1e-6)


def test_injected_dsb_is_used_without_a_keylog(tshark: str, corpus: Path, tmp_path: Path) -> None:
    check = next(c for c in json.loads((CORPUS / "expected.json").read_text())["decryption_checks"]
                 if c["keylog"].startswith("DSB"))
    out = tmp_path / "dsb.pcapng"
    subprocess.run(["editcap", "--inject-secrets", f"tls,{corpus / 'zeek/tls12-decryption.keylog'}",
                    str(corpus / check["file"]), str(out)], check=True, capture_output=True)
    (req_frame, method, host, uri, _), (_, _, _, _, status) = check["with_keys"]
    a = lyncpcap.analyze(out)
    assert tls_steps(a) == [(req_frame, method, f"https://{host}{uri}", status)]
    b = lyncpcap.analyze(corpus / check["file"])  # the same packets without the block
    assert tls_steps(b) == []
    assert "no keys" in b.tls_list[0].reason


def test_without_keys_tls_is_reported_and_nothing_inferred(corpus: Path) -> None:
    """A connection to a server Lync does not name is only listed (it is no step)."""
    a = lyncpcap.analyze(corpus / "zeek/tls12-decryption.pcap")
    assert not a.step_list
    [conn] = a.tls_list
    assert not conn.decrypted and conn.sni == "heise.de" and "--keylog" in conn.reason
    assert any("not decrypted" in w and "heise.de" in w for w in a.captures[0].warnings)


def test_an_encrypted_sign_in_without_keys_shows_where_the_client_went(tmp_path: Path, tshark: str) -> None:
    """The phone of sample 08 captured without its keys: the sign-in is its DNS lookups and the
    encrypted connection to the reverse proxy that follows them (a step of its own, from the
    connection's start to its first data), incomplete since nothing says how it ended.  With the
    keys, the same connection is its decrypted requests, and no encrypted step remains."""
    spec = next(s for s in CATALOGUE if s.name == "08-ucwa-mobile-oauth-tls")
    with tlssim.Pki() as pki:
        written = build_one(dataclasses.replace(spec, embed_keys=False), tmp_path, pki=pki)
    capture = next(p for p in written if p.suffix == ".pcapng")
    keylog = next(p for p in written if p.suffix == ".keylog")
    (session,) = lyncpcap.analyze(capture).session_list
    assert session.outcome == "incomplete" and session.failure is None
    assert [(s.step, s.method, s.url, s.status) for s in session.steps] == [
        ("dns", "A", "lyncdiscoverinternal.contoso.com", "NXDOMAIN"),
        ("dns", "A", "lyncdiscover.contoso.com", "NOERROR"),
        ("other", "TLS", "tls://lyncdiscover.contoso.com:443", "encrypted"),
    ]
    encrypted = session.steps[-1]
    assert encrypted.duration > 0 and encrypted.result == "info" and "no key" in encrypted.detail
    decrypted = lyncpcap.analyze(capture, keylog=keylog)
    assert not [s for s in decrypted.step_list if s.facts.get("encrypted")]
    assert [s.outcome for s in decrypted.session_list] == ["success"]


# ------------------------------------------------------------------------------------------------
# the lab's TLS twins
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("capture", "keylog"), [(EXTERNAL_TLS, EXTERNAL_KEYLOG), (MOBILE_DSB, None)], ids=["keylog", "dsb"])
def test_tls_twin_gives_the_plaintext_sessions(capture: Path, keylog: Path | None, tshark: str) -> None:
    a = lyncpcap.analyze(capture, keylog=keylog)
    truth = load(truth_path(capture))
    assert truth["plaintext_twin"] and truth["sessions"] == load(SAMPLES / f"{truth['plaintext_twin']}.truth.json")["sessions"]
    problems = differences(a, truth)
    assert not problems, "\n".join(problems)
    assert all(t.decrypted for t in a.tls_list)
    assert a.captures[0].decrypted
    web = [s for s in a.step_list if s.step not in ("dns", "kerberos")]
    assert web and all(s.transport == "tls" for s in web)
    assert all(s.url.startswith(("https://", "sip:")) for s in web if s.url)


@pytest.mark.parametrize("spec", [s for s in CATALOGUE if s.tls], ids=lambda s: s.name)
def test_freshly_built_tls_capture_gives_its_truth(spec: Spec, tmp_path: Path, tshark: str) -> None:
    """TLS bytes differ on every lab run (OpenSSL's own randomness): analyse a new build too. A
    twin decrypts to its plaintext twin's sessions; a failed handshake has nothing to decrypt."""
    with tlssim.Pki() as pki:
        written = build_one(spec, tmp_path, pki=pki)
    capture = next(p for p in written if p.suffix in (".pcapng", ".pcap"))
    keylog = next((p for p in written if p.suffix == ".keylog"), None)
    assert (keylog is None) == (spec.embed_keys or not spec.twin_of)
    a = lyncpcap.analyze(capture, keylog=keylog)
    assert not differences(a, load(SAMPLES / f"{spec.twin_of or spec.name}.truth.json"))


@pytest.mark.parametrize("name", ["02-desktop-external-ntlm-tls", "08-ucwa-mobile-oauth-tls"])
def test_a_decrypted_capture_longer_than_a_session_keeps_each_sign_in_whole(name: str, tmp_path: Path, tshark: str) -> None:
    """The decrypted steps reach the classifiers after lyncpcap's own read of the capture: a
    capture that runs on for 20 minutes after a sign-in must still give that sign-in whole (its
    DNS and its decrypted web and SIP steps in one session), not one session per decrypted step."""
    spec = next(s for s in CATALOGUE if s.name == name)

    def twice(cap: Any) -> None:
        spec.build(cap)
        cap.net.advance(1200.0)
        spec.build(cap)

    with tlssim.Pki() as pki:
        written = build_one(dataclasses.replace(spec, build=twice), tmp_path, pki=pki)
    capture = next(p for p in written if p.suffix in (".pcapng", ".pcap"))
    keylog = next((p for p in written if p.suffix == ".keylog"), None)
    truth = load(next(p for p in written if p.name.endswith(".truth.json")))
    assert len(truth["sessions"]) == 2 * len(load(SAMPLES / f"{spec.twin_of}.truth.json")["sessions"])
    a = lyncpcap.analyze(capture, keylog=keylog)
    assert a.captures[0].decrypted
    problems = differences(a, truth)
    assert not problems, "\n".join(problems)
    assert not [w for w in a.captures[0].warnings if "out of time order" in w]


def test_held_steps_come_back_in_order_through_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past IN_MEMORY steps the held ones wait in a temporary file, and come back in the order they
    were held, each decrypted step after the held ones that completed before it."""
    monkeypatch.setattr(heldsteps, "IN_MEMORY", 3)
    out: list[tuple[str, float]] = []

    def step(name: str, t: float) -> Step:
        return Step(step=name, time=t, end=t, frame=int(t), src="a", dst="b", method=None, url=None, status=None,
                    auth=None, detail="")  # fmt: skip

    with heldsteps.HeldSteps(lambda s: out.append((s.step, s.end))) as held:
        for t in range(1, 9):
            held.hold(step("dns", float(t)))
        assert len(held) == 8 and held._file is not None
        held.merge(step("webticket", 4.5))
        held.merge(step("oauth", 6.0))
        held.release()
        assert len(held) == 0
    assert out == [("dns", 1.0), ("dns", 2.0), ("dns", 3.0), ("dns", 4.0), ("webticket", 4.5), ("dns", 5.0),
                   ("dns", 6.0), ("oauth", 6.0), ("dns", 7.0), ("dns", 8.0)]  # fmt: skip


def test_step_frames_are_the_frames_tshark_shows_the_messages_in(tshark: str) -> None:
    a = lyncpcap.analyze(EXTERNAL_TLS, keylog=EXTERNAL_KEYLOG)
    out = subprocess.run(
        [tshark, "-n", "-r", str(EXTERNAL_TLS), "-o", f"tls.keylog_file:{EXTERNAL_KEYLOG}",
         "-Y", "http.request || sip.Method", "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert sorted(s.frame for s in a.step_list) == [int(x) for x in out.split()]


def test_missing_keys_leave_those_connections_undecrypted(tmp_path: Path, tshark: str) -> None:
    """Drop the key-log lines of the SIP connection and the last web connection: they are reported
    with their client random, the rest still analyses."""
    a = lyncpcap.analyze(EXTERNAL_TLS)
    randoms = {t.conn: t.client_random or "" for t in a.tls_list}
    assert all(len(r) == 64 for r in randoms.values())
    sip = next(t.conn for t in a.tls_list if t.server_port == 5061)
    last = max(t.conn for t in a.tls_list if t.server_port == 443)
    keep = [line for line in EXTERNAL_KEYLOG.read_text().splitlines()
            if line.split()[1] not in (randoms[sip], randoms[last])]
    partial = tmp_path / "partial.keylog"
    partial.write_text("\n".join(keep) + "\n")
    b = lyncpcap.analyze(EXTERNAL_TLS, keylog=partial)
    state = {t.conn: t for t in b.tls_list}
    assert not state[sip].decrypted and not state[last].decrypted
    for conn in (sip, last):
        assert state[conn].reason.startswith(f"no key for client random {randoms[conn][:16]}")
        assert state[conn].as_dict()["reason"] == state[conn].reason
    assert all(t.decrypted for c, t in state.items() if c not in (sip, last))
    assert not [s for s in b.step_list if s.conn in (sip, last)]  # nothing inferred from them
    assert any(w.startswith("2 TLS connection(s) were not decrypted") for w in b.captures[0].warnings)
    [session] = b.session_list
    assert session.user == "CONTOSO\\carol" and session.client_address == "198.51.100.77"
    assert "sip-register" not in [s.step for s in session.steps]
    assert [s.step for s in session.steps][:3] == ["autodiscover", "autodiscover", "mex"]


# ------------------------------------------------------------------------------------------------
# captures made at test time: TLS 1.3, RSA key exchange, unsupported cipher
# ------------------------------------------------------------------------------------------------


def _exchange(path: Path, *, kx: str = "ecdhe", version: str = "1.2", ciphers: str | None = None,
              monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[list[str], bytes]:
    """One HTTPS GET/200 over real TLS (OpenSSL) in a lab capture; returns (key-log lines, server key)."""
    if ciphers is not None:
        assert monkeypatch is not None
        plain = tlssim._contexts

        def contexts(*args: Any, **kw: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
            client, server = plain(*args, **kw)
            for ctx in (client, server):
                ctx.set_ciphers(ciphers)
            return client, server

        monkeypatch.setattr(tlssim, "_contexts", contexts)
    net = Network(7, datetime(2014, 2, 20, 8, 0, tzinfo=UTC))
    client, server = net.host("pc", "10.0.10.9"), net.host("fe", "10.0.0.21")
    keylog: list[str] = []
    with tlssim.Pki() as pki:
        conn = tlssim.TlsConn(net.tcp(client, server, 443), pki, [WEB_FQDN], sni=WEB_FQDN, kx=kx, version=version, keylog=keylog)
        conn.send(lync.request("GET", "/Autodiscover/AutodiscoverService.svc/root", WEB_FQDN, user_agent="OC/15.0.4569.1503 (Microsoft Lync)"))
        conn.reply(lync.response(200, body=b"{}", content_type="application/json", ts=net.now))
        conn.close()
        key = pki.rsa_key_pem(WEB_FQDN)
    net.write_pcapng(path)
    return keylog, key


def test_tls_inside_a_proxy_connect_tunnel(tmp_path: Path, tshark: str) -> None:
    """A client behind an HTTP proxy: CONNECT in clear, then TLS on the same TCP connection."""
    net = Network(9, datetime(2014, 2, 20, 8, 0, tzinfo=UTC))
    client, proxy = net.host("pc", "10.0.10.9"), net.host("proxy", "10.0.0.80")
    keylog: list[str] = []
    with tlssim.Pki() as pki:
        tcp = net.tcp(client, proxy, 8080)
        tcp.send(b"CONNECT lyncweb.contoso.com:443 HTTP/1.1\r\nHost: lyncweb.contoso.com:443\r\n\r\n")
        tcp.reply(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn = tlssim.TlsConn(tcp, pki, [WEB_FQDN], sni=WEB_FQDN, keylog=keylog)
        conn.send(lync.request("GET", "/Autodiscover/AutodiscoverService.svc/root", WEB_FQDN))
        conn.reply(lync.response(200, body=b"{}", content_type="application/json", ts=net.now))
        conn.close()
    capture, keys = tmp_path / "proxy.pcapng", tmp_path / "proxy.keylog"
    net.write_pcapng(capture)
    keys.write_text("\n".join(keylog) + "\n")
    a = lyncpcap.analyze(capture, keylog=keys)
    inner = [s for s in a.step_list if s.transport == "tls"]
    assert [(s.step, s.url, s.status, s.src, s.dst) for s in inner] == [
        ("autodiscover", f"https://{WEB_FQDN}/Autodiscover/AutodiscoverService.svc/root", 200, "10.0.10.9", "10.0.0.80")
    ]
    assert a.captures[0].decrypted
    assert [s.method for s in a.step_list if s.transport == "tcp"] == ["CONNECT"]


def test_tls13_connection_is_decrypted_with_traffic_secrets(tmp_path: Path, tshark: str) -> None:
    capture = tmp_path / "tls13.pcapng"
    lines, _ = _exchange(capture, version="1.3")
    labels = {line.split()[0] for line in lines}
    assert {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels and "CLIENT_RANDOM" not in labels
    full = tmp_path / "full.keylog"
    full.write_text("\n".join(lines) + "\n")
    a = lyncpcap.analyze(capture, keylog=full)
    assert [(s.step, s.url, s.status) for s in a.step_list] == [
        ("autodiscover", f"https://{WEB_FQDN}/Autodiscover/AutodiscoverService.svc/root", 200)
    ]
    half = tmp_path / "half.keylog"
    half.write_text("\n".join(line for line in lines if not line.startswith("SERVER_TRAFFIC_SECRET_0")) + "\n")
    b = lyncpcap.analyze(capture, keylog=half)
    [conn] = b.tls_list
    # tshark decrypts the client's half only: the request is there, its answer is not
    assert conn.decrypted
    assert [(s.step, s.status, s.result) for s in b.step_list] == [("autodiscover", None, "none")]
    assert any("one direction only" in w and "SERVER_TRAFFIC_SECRET_0" in w for w in b.captures[0].warnings)


def test_rsa_key_decrypts_rsa_key_exchange(tmp_path: Path, tshark: str) -> None:
    capture = tmp_path / "rsa.pcapng"
    _, key = _exchange(capture, kx="rsa")
    pem = tmp_path / "fe01.pem"
    pem.write_bytes(key)
    for spec in (str(pem), f"{pem}@10.0.0.21:443", f"{pem}@10.0.0.21"):
        a = lyncpcap.analyze(capture, rsa_keys=[spec])
        assert [(s.frame, s.status) for s in a.step_list if s.transport == "tls"] == [(8, 200)], spec
        assert a.captures[0].rsa_keys == [str(RsaKey.parse(spec))]
    b = lyncpcap.analyze(capture)
    assert not b.step_list and "no keys" in b.tls_list[0].reason


def test_rsa_key_cannot_decrypt_forward_secret_exchange(tmp_path: Path, tshark: str) -> None:
    capture = tmp_path / "ecdhe.pcapng"
    _, key = _exchange(capture, kx="ecdhe")
    pem = tmp_path / "fe01.pem"
    pem.write_bytes(key)
    a = lyncpcap.analyze(capture, rsa_keys=[str(pem)])
    [conn] = a.tls_list
    assert not conn.decrypted
    assert "forward-secret" in conn.reason and "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" in conn.reason
    assert conn.as_dict()["cipher"] == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 (0xC030)"


def test_unsupported_cipher_is_named(tmp_path: Path, tshark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenSSL negotiates ARIA-GCM, which tshark 4.0 cannot decrypt even with the key log."""
    capture = tmp_path / "aria.pcapng"
    lines, _ = _exchange(capture, ciphers="ECDHE-ARIA128-GCM-SHA256", monkeypatch=monkeypatch)
    keylog = tmp_path / "aria.keylog"
    keylog.write_text("\n".join(lines) + "\n")
    a = lyncpcap.analyze(capture, keylog=keylog)
    [conn] = a.tls_list
    assert not conn.decrypted and not a.step_list
    assert conn.reason == (
        "unsupported cipher: the server chose TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256 (0xC060), which tshark cannot decrypt"
    )


# ------------------------------------------------------------------------------------------------
# tshark missing or too old; plaintext never needs it
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_tshark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    yield empty


def test_missing_tshark_is_one_line_with_the_install_command(no_tshark: Path) -> None:
    with pytest.raises(CaptureError) as err:
        lyncpcap.analyze(EXTERNAL_TLS, keylog=EXTERNAL_KEYLOG)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(EXTERNAL_TLS))
    assert "tshark" in text and "apt-get install tshark" in text
    with pytest.raises(CaptureError, match="apt-get install tshark"):
        lyncpcap.analyze(MOBILE_DSB)  # embedded secrets need tshark too


def test_plaintext_needs_no_tshark(no_tshark: Path) -> None:
    plain = SAMPLES / "02-desktop-external-ntlm.pcapng"
    a = lyncpcap.analyze(plain, keylog=EXTERNAL_KEYLOG)  # a key log but no TLS: tshark is not asked
    assert not differences(a, load(truth_path(plain)))
    b = lyncpcap.analyze(EXTERNAL_TLS)  # TLS without any key: reported, no tshark needed
    assert all("no keys" in t.reason for t in b.tls_list)


def test_old_tshark_is_refused(no_tshark: Path) -> None:
    fake = no_tshark / "tshark"
    fake.write_text("#!/bin/sh\necho 'TShark (Wireshark) 2.6.20 (Git v2.6.20 packaged as 2.6.20-0+deb10u1)'\n")
    fake.chmod(0o755)
    with pytest.raises(CaptureError) as err:
        lyncpcap.analyze(EXTERNAL_TLS, keylog=EXTERNAL_KEYLOG)
    assert "tshark 2.6.20 is too old" in str(err.value) and "apt-get install tshark" in str(err.value)


def test_cli_exit_2_when_tshark_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "lyncpcap", "analyze", str(EXTERNAL_TLS), "--keylog", str(EXTERNAL_KEYLOG), "--format", "json"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install tshark" in lines[0]


def test_cli_rsa_key_option(tmp_path: Path, tshark: str) -> None:
    capture = tmp_path / "rsa.pcapng"
    _, key = _exchange(capture, kx="rsa")
    pem = tmp_path / "k.pem"
    pem.write_bytes(key)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lyncpcap", "analyze", str(capture), "--format", "json", "--rsa-key"]
    done = subprocess.run([*cmd, f"{pem}@10.0.0.21:443"], capture_output=True, text=True, env=env, check=True)
    doc = json.loads(done.stdout)
    assert doc["captures"][0]["decrypted"] is True
    bad = subprocess.run([*cmd, str(tmp_path / "missing.pem")], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--rsa-key" in bad.stderr


# ------------------------------------------------------------------------------------------------
# small parts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "address", "port"),
    [
        ("key.pem", "key.pem", None, None),
        ("key.pem@10.0.0.21", "key.pem", "10.0.0.21", None),
        ("key.pem@10.0.0.21:5061", "key.pem", "10.0.0.21", 5061),
        ("dir/k@y.pem@[fd00::21]:443", "dir/k@y.pem", "fd00::21", 443),
        ("key.pem@fd00::21", "key.pem", "fd00::21", None),
    ],
)
def test_rsa_key_spec(spec: str, path: str, address: str | None, port: int | None) -> None:
    key = RsaKey.parse(spec)
    assert (str(key.path), key.address, key.port) == (path, address, port)
    assert RsaKey.parse(str(key)) == key


@pytest.mark.parametrize("spec", ["key.pem@not-an-ip", "key.pem@10.0.0.1:99999", "key.pem@[fd00::1", "@10.0.0.1"])
def test_bad_rsa_key_spec(spec: str) -> None:
    with pytest.raises(ValueError):
        RsaKey.parse(spec)


def test_keylog_labels_from_file_and_embedded_secrets(tmp_path: Path) -> None:
    r12, r13 = "ab" * 32, "CD" * 32
    f = tmp_path / "k.log"
    f.write_text(f"# comment\nCLIENT_RANDOM {r12} {'00' * 48}\nRSA 0011223344556677 {'11' * 48}\n")
    dsb = f"CLIENT_TRAFFIC_SECRET_0 {r13} {'22' * 32}\n".encode()
    k = KeyLog.load(f, [(0x544C534B, dsb), (0x57474B4C, b"WireGuard key, not TLS")])
    assert k.missing(r12, tls13=False) == []
    assert k.missing(r13.lower(), tls13=True) == ["SERVER_TRAFFIC_SECRET_0"]
    assert k.missing("ef" * 32, tls13=False) == ["CLIENT_RANDOM"]
    assert k.rsa_lines == 1 and bool(k)


def test_tshark_is_found_and_recent(tshark: str) -> None:
    t = find_tshark()
    assert Path(t.path) == Path(shutil.which("tshark") or "") and t.version >= (3, 0, 0)
