"""tshark, independently of lyncpcap, sees in every sample capture what its truth file claims.

HTTP requests with their statuses, NTLM users and domains, Kerberos SPNs and realms, SIP REGISTER
transactions and DNS lookups — and no malformed packet or expert warning anywhere.
"""

from __future__ import annotations

import base64
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import sample_captures, truth_path
from spnego._ntlm_raw.messages import Authenticate
from truth import load

CAPTURES = sample_captures() + sample_captures(tls=True)


def _with(predicate) -> list[Path]:  # type: ignore[no-untyped-def]
    return [c for c in CAPTURES if predicate(load(truth_path(c)))]


WITH_NTLM = _with(lambda t: any(s["auth_protocol"] == "ntlm" for s in t["sessions"]))
WITH_KDC = _with(lambda t: any(st["step"] == "kerberos" for s in t["sessions"] for st in s["steps"]))


def run_fields(tshark: str, capture: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    args = [tshark, "-n", "-r", str(capture)]
    keylog = capture.with_suffix(".keylog")
    if keylog.exists():
        args += ["-o", f"tls.keylog_file:{keylog}"]
    args += ["-Y", display_filter, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def truth_steps(capture: Path) -> list[dict]:
    truth = load(truth_path(capture))
    return [st for s in truth["sessions"] for st in s["steps"]]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_no_malformed_packets(tshark: str, capture: Path) -> None:
    rows = run_fields(tshark, capture, "_ws.malformed || _ws.expert.severity >= warning", ["frame.number", "_ws.expert.message"])
    # a connection the scenario has refused carries tshark's "Connection reset (RST)" warning, nothing else may
    refused = sum(1 for st in truth_steps(capture) if st["step"] == "other" and st["status"] == "refused")
    resets = [r for r in rows if r[1] == "Connection reset (RST)"]
    assert len(resets) == refused
    assert [r for r in rows if r not in resets] == []


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_http_requests_and_statuses(tshark: str, capture: Path) -> None:
    requests = {r[0]: (r[1], r[2].split("?", 1)[0]) for r in run_fields(tshark, capture, "http.request", ["frame.number", "http.request.method", "http.request.uri"])}
    seen: Counter[tuple[str, str, int]] = Counter()
    for frame, code in run_fields(tshark, capture, "http.response", ["http.request_in", "http.response.code"]):
        method, path = requests[frame]
        seen[(method, path, int(code))] += 1
    want: Counter[tuple[str, str, int]] = Counter(
        (st["method"], st["path"], st["status"]) for st in truth_steps(capture) if "path" in st
    )
    missing = want - seen
    assert not missing, f"tshark does not show these request/status pairs: {dict(missing)}"


@pytest.mark.parametrize("capture", WITH_NTLM, ids=lambda p: p.stem)
def test_ntlm_users_and_domains(tshark: str, capture: Path) -> None:
    truth = load(truth_path(capture))
    users = {s["user"] for s in truth["sessions"] if s["auth_protocol"] == "ntlm" and s["user"]}
    rows = run_fields(tshark, capture, "ntlmssp.messagetype == 3", ["ntlmssp.auth.domain", "ntlmssp.auth.username"])
    seen = {f"{d}\\{u}" for d, u in rows}
    # tshark does not decode MS-SIPAE gssapi-data: take the header from tshark, decode it with pyspnego
    for (value,) in run_fields(tshark, capture, "sip.Authorization contains \"gssapi-data\"", ["sip.Authorization"]):
        blob = value.split('gssapi-data="', 1)[1].split('"', 1)[0]
        raw = base64.b64decode(blob) if blob else b""
        if raw[8:12] == b"\x03\x00\x00\x00":
            msg = Authenticate.unpack(raw)
            seen.add(f"{msg.domain_name}\\{msg.user_name}")
    assert users <= seen


@pytest.mark.parametrize("capture", WITH_KDC, ids=lambda p: p.stem)
def test_kerberos_spns_and_realms(tshark: str, capture: Path) -> None:
    spns = {st["spn"] for st in truth_steps(capture) if st["step"] == "kerberos"}
    rows = run_fields(tshark, capture, "kerberos.msg_type == 12", ["kerberos.realm", "kerberos.SNameString"])
    seen_names = {n for _, names in rows for n in names.split("|")}
    realms = {r for realm, _ in rows for r in realm.split("|")}
    for spn in spns:
        assert set(spn.split("/")) <= seen_names, spn
    assert realms == {"CONTOSO.COM"}


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_sip_register_transactions(tshark: str, capture: Path) -> None:
    want = Counter(st["status"] for st in truth_steps(capture) if st["step"] == "sip-register")
    requests = run_fields(tshark, capture, "sip.Method == \"REGISTER\"", ["frame.number"])
    responses = run_fields(tshark, capture, "sip.Status-Code && sip.CSeq.method == \"REGISTER\"", ["sip.Status-Code"])
    assert len(requests) == sum(want.values())
    assert Counter(int(r[0]) for r in responses) == want


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_dns_lookups(tshark: str, capture: Path) -> None:
    want = Counter((st["name"], st["status"]) for st in truth_steps(capture) if st["step"] == "dns")
    rows = run_fields(tshark, capture, "dns.flags.response == 1", ["dns.qry.name", "dns.flags.rcode"])
    names = {0: "NOERROR", 3: "NXDOMAIN"}
    seen = Counter((name, names.get(int(rcode), rcode)) for name, rcode in rows)
    assert not (want - seen), dict(want - seen)
