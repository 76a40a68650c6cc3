"""`lyncpcap analyze --format json` (and jsonl) against shared CONTRACT.md, for every sample capture.

The allowed values are written out here from CONTRACT.md rather than imported from the package,
so a renamed constant in the code cannot quietly change the contract.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reportkit import analysis_of, run_cli, sample_captures

from lyncpcap.report import exports

STEPS = {"dns", "autodiscover", "mex", "webticket", "oauth", "adfs", "certprov", "kerberos", "sip-register", "ucwa",
         "other"}
AUTH_PROTOCOLS = {"kerberos", "ntlm", "soap", "password", "anonymous", "passive", "certificate", "tls-dsk", "digest",
                  "unknown"}
OUTCOMES = {"success", "failure", "incomplete"}
LOCATIONS = {"internal", "external", "unknown"}
SEVERITIES = {"high", "medium", "low", "info"}
TRANSPORTS = {"http", "sip", "kdc"}
EXCHANGE_PROTOCOLS = {"ntlm", "kerberos"}
MESSAGES = {"negotiate", "challenge", "authenticate", "as-req", "as-rep", "tgs-req", "tgs-rep", "ap-req", "ap-rep",
            "krb-error"}
NTLM_VERSIONS = {"v1", "v2", "ntlm2-session", None}
CAPTURE_FORMATS = {"pcap", "pcapng", "saz", "har"}
#: the finding ids CONTRACT.md fixes; others are allowed ("at least") but must look like ids
CONTRACT_FINDINGS = {"external-domain-credentials", "external-without-mfa", "lockout-risk", "password-spray", "ntlm-v1",
                     "anonymous-access", "kerberos-fallback-ntlm"}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
FINDING_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def instant(value: Any, where: str) -> datetime:
    assert isinstance(value, str) and ISO_UTC.match(value), f"{where}: {value!r} is not ISO 8601 UTC with µs"
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


def optional_str(value: Any, where: str) -> None:
    assert value is None or (isinstance(value, str) and value), f"{where}: {value!r}"


def number(value: Any, where: str) -> float:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    assert value >= 0, f"{where}: {value!r} is negative"
    return float(value)


def count(value: Any, where: str) -> int:
    assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{where}: {value!r}"
    return value


def check_step(step: dict[str, Any], where: str) -> datetime:
    for key in ("step", "time", "frame", "src", "dst", "method", "url", "status", "auth", "duration_s", "detail"):
        assert key in step, f"{where}: no {key}"
    assert step["step"] in STEPS, f"{where}: step {step['step']!r}"
    when = instant(step["time"], f"{where}.time")
    assert count(step["frame"], f"{where}.frame") >= 1
    for key in ("src", "dst"):
        assert isinstance(step[key], str) and step[key], f"{where}.{key}"
    optional_str(step["method"], f"{where}.method")
    optional_str(step["url"], f"{where}.url")
    assert step["status"] is None or isinstance(step["status"], (int, str)), f"{where}.status"
    assert not isinstance(step["status"], bool)
    assert step["auth"] is None or step["auth"] in AUTH_PROTOCOLS, f"{where}.auth {step['auth']!r}"
    number(step["duration_s"], f"{where}.duration_s")
    assert isinstance(step["detail"], str), f"{where}.detail"
    return when


def client_address(value: Any, formats: set[str], where: str) -> None:
    """An IP address; a HAR has none, and its reader names the client `har:<file name>` instead."""
    assert isinstance(value, str) and value, where
    if value.startswith("har:") and "har" in formats:
        return
    ipaddress.ip_address(value)


def check_session(s: dict[str, Any], where: str, formats: set[str]) -> None:
    for key in ("id", "client", "user", "auth_protocol", "outcome", "failure", "start", "end", "duration_s", "steps"):
        assert key in s, f"{where}: no {key}"
    client = s["client"]
    for key in ("address", "user_agent", "kind", "location"):
        assert key in client, f"{where}.client: no {key}"
    client_address(client["address"], formats, f"{where}.client.address")
    optional_str(client["user_agent"], f"{where}.client.user_agent")
    assert isinstance(client["kind"], str) and client["kind"], f"{where}.client.kind"
    assert client["location"] in LOCATIONS, f"{where}.client.location {client['location']!r}"
    optional_str(s["user"], f"{where}.user")
    assert s["auth_protocol"] in AUTH_PROTOCOLS, f"{where}.auth_protocol {s['auth_protocol']!r}"
    assert s["outcome"] in OUTCOMES, f"{where}.outcome {s['outcome']!r}"
    if s["failure"] is not None:
        failure = s["failure"]
        assert set(failure) >= {"step", "reason", "evidence"}, f"{where}.failure {failure!r}"
        assert failure["step"] in STEPS, f"{where}.failure.step"
        assert isinstance(failure["reason"], str) and failure["reason"], f"{where}.failure.reason"
        assert isinstance(failure["evidence"], str), f"{where}.failure.evidence"
    if s["outcome"] == "success":
        assert s["failure"] is None, f"{where}: a successful session with a failure"
    start, end = instant(s["start"], f"{where}.start"), instant(s["end"], f"{where}.end")
    assert start <= end, f"{where}: ends before it starts"
    duration = number(s["duration_s"], f"{where}.duration_s")
    assert abs(duration - (end - start).total_seconds()) < 1e-3, f"{where}.duration_s"
    assert isinstance(s["steps"], list) and s["steps"], f"{where}.steps"
    times = [check_step(st, f"{where}.steps[{i}]") for i, st in enumerate(s["steps"])]
    assert times == sorted(times), f"{where}: steps not in time order"
    assert start <= times[0] and times[-1] <= end, f"{where}: steps outside the session"


def check_document(doc: dict[str, Any]) -> None:
    assert doc["schema"] == 1
    assert doc["tool"]["name"] == "lyncpcap" and isinstance(doc["tool"]["version"], str) and doc["tool"]["version"]
    assert isinstance(doc["captures"], list) and doc["captures"]
    for i, c in enumerate(doc["captures"]):
        where = f"captures[{i}]"
        assert isinstance(c["path"], str) and c["path"], where
        assert c["format"] in CAPTURE_FORMATS, f"{where}.format {c['format']!r}"
        count(c["packets"], f"{where}.packets")
        assert isinstance(c["decrypted"], bool), f"{where}.decrypted"
        assert isinstance(c["warnings"], list) and all(isinstance(w, str) and w for w in c["warnings"]), where
    ids = [s["id"] for s in doc["sessions"]]
    assert len(ids) == len(set(ids)), "session ids are not unique"
    assert all(isinstance(i, str) and i for i in ids)
    for i, s in enumerate(doc["sessions"]):
        check_session(s, f"sessions[{i}]", {c["format"] for c in doc["captures"]})
    for i, a in enumerate(doc["auth"]):
        where = f"auth[{i}]"
        for key in ("time", "frame", "transport", "protocol", "message", "user", "domain", "workstation",
                    "ntlm_version", "realm", "spn", "error_code", "session"):
            assert key in a, f"{where}: no {key}"
        instant(a["time"], f"{where}.time")
        assert count(a["frame"], f"{where}.frame") >= 1
        assert a["transport"] in TRANSPORTS, f"{where}.transport {a['transport']!r}"
        assert a["protocol"] in EXCHANGE_PROTOCOLS, f"{where}.protocol {a['protocol']!r}"
        assert a["message"] in MESSAGES, f"{where}.message {a['message']!r}"
        for key in ("user", "domain", "workstation", "realm", "spn"):
            optional_str(a[key], f"{where}.{key}")
        assert a["ntlm_version"] in NTLM_VERSIONS, f"{where}.ntlm_version {a['ntlm_version']!r}"
        assert a["error_code"] is None or isinstance(a["error_code"], int), f"{where}.error_code"
        assert a["session"] is None or a["session"] in ids, f"{where}.session {a['session']!r}"
    total = 0
    for i, c in enumerate(doc["clients"]):
        where = f"clients[{i}]"
        for key in ("kind", "location", "auth_protocols", "sessions", "succeeded", "failed", "median_duration_s"):
            assert key in c, f"{where}: no {key}"
        assert isinstance(c["kind"], str) and c["kind"], where
        assert c["location"] in LOCATIONS, f"{where}.location"
        assert c["auth_protocols"] and set(c["auth_protocols"]) <= AUTH_PROTOCOLS, f"{where}.auth_protocols"
        sessions = count(c["sessions"], f"{where}.sessions")
        assert sessions >= 1 and count(c["succeeded"], where) + count(c["failed"], where) <= sessions, where
        number(c["median_duration_s"], f"{where}.median_duration_s")
        total += sessions
    assert total == len(ids), "the client rows do not add up to the sessions"
    for i, f in enumerate(doc["findings"]):
        where = f"findings[{i}]"
        for key in ("id", "severity", "title", "detail", "sessions", "evidence", "advice"):
            assert key in f, f"{where}: no {key}"
        assert isinstance(f["id"], str) and FINDING_ID.match(f["id"]), f"{where}.id {f['id']!r}"
        assert f["severity"] in SEVERITIES, f"{where}.severity {f['severity']!r}"
        for key in ("title", "detail", "advice"):
            assert isinstance(f[key], str) and f[key], f"{where}.{key}"
        assert isinstance(f["sessions"], list) and set(f["sessions"]) <= set(ids), f"{where}.sessions"
        assert isinstance(f["evidence"], list) and all(isinstance(x, str) for x in f["evidence"]), f"{where}.evidence"


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_json_follows_the_contract(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "analyze", str(capture), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    check_document(doc)
    analysis = analysis_of(capture.name)
    assert len(doc["sessions"]) == len(analysis.session_list)
    assert {f["id"] for f in doc["findings"]} >= {f.id for f in analysis.finding_list if f.id in CONTRACT_FINDINGS}


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_jsonl_has_the_document_records(capture: Path) -> None:
    analysis = analysis_of(capture.name)
    doc = exports.document(analysis)
    lines = exports.jsonl_text(analysis).splitlines()
    records = [json.loads(line) for line in lines]
    assert all(r["type"] in {"capture", "session", "auth", "client", "finding"} for r in records)
    for kind, key in exports.JSONL_TYPES:
        mine = [{k: v for k, v in r.items() if k != "type"} for r in records if r["type"] == kind]
        assert mine == doc[key], kind
    rebuilt = dict(doc)
    for kind, key in exports.JSONL_TYPES:
        rebuilt[key] = [{k: v for k, v in r.items() if k != "type"} for r in records if r["type"] == kind]
    check_document(rebuilt)


def test_the_checker_rejects_a_broken_document() -> None:
    doc = exports.document(analysis_of("09a-wrong-password.pcapng"))
    check_document(doc)
    broken = json.loads(json.dumps(doc))
    broken["sessions"][0]["steps"][0]["time"] = "2014-02-21 07:45:05"
    with pytest.raises(AssertionError, match="ISO 8601"):
        check_document(broken)
    broken = json.loads(json.dumps(doc))
    broken["sessions"][0]["outcome"] = "failed"
    with pytest.raises(AssertionError, match="outcome"):
        check_document(broken)
    broken = json.loads(json.dumps(doc))
    broken["findings"][0]["severity"] = "critical"
    with pytest.raises(AssertionError, match="severity"):
        check_document(broken)


def test_times_are_written_as_datetime_writes_them() -> None:
    """`iso` keeps the text of the last second it formatted: it must still say what
    `datetime.fromtimestamp(ts, UTC)` says, microseconds rounded half to even, at every boundary."""
    import random
    from datetime import UTC

    from lyncpcap.report.document import iso

    rng = random.Random(4)
    cases = [0.0, 1e-7, 4.9999995e-6, 1.9999995, 1.9999994999, 1392892205.1234565, 4294967295.9999995]
    for _ in range(20_000):
        whole = rng.randrange(0, 1 << 32)
        cases += [whole + rng.random(), whole + rng.randrange(2_000_000) / 2e6, whole + 0.9999995]
    cases += sorted(cases[:2000])  # runs of the same second, as in a document
    for ts in cases:
        assert iso(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), repr(ts)
