"""Security findings on the sample captures: what a correct audit must raise, and what it must not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES, sample_captures, truth_path
from truth import load

import lyncpcap
from lyncpcap.findings import Thresholds


def ids(path: Path, **kw: object) -> dict[str, list]:
    a = lyncpcap.analyze(path, **kw)  # type: ignore[arg-type]
    out: dict[str, list] = {}
    for f in a.finding_list:
        out.setdefault(f.id, []).append(f)
    return out


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_truth_findings_are_raised_with_evidence_and_advice(capture: Path) -> None:
    found = ids(capture)
    for fid in load(truth_path(capture))["findings"]:
        assert fid in found, f"{fid} not raised"
        for f in found[fid]:
            assert f.evidence and f.advice and f.detail
            assert f.severity in ("high", "medium", "low", "info")


def test_clean_internal_kerberos_raises_nothing_high() -> None:
    found = ids(SAMPLES / "01-desktop-internal-kerberos.pcapng")
    assert not [f for fs in found.values() for f in fs if f.severity in ("high", "medium")]


def test_external_domain_credentials_names_the_sessions_and_advises_passive_auth() -> None:
    f = ids(SAMPLES / "02-desktop-external-ntlm.pcapng")["external-domain-credentials"][0]
    assert f.sessions == ("s1",)
    assert "CONTOSO\\carol" in f.evidence[0]
    assert "-UseWsFedPassiveAuth $true" in f.advice and "-UseWindowsAuth none" in f.advice


def test_lockout_counts_the_phone_that_retries_on_its_own() -> None:
    (f,) = ids(SAMPLES / "09b-locked-account.pcapng")["lockout-risk"]
    assert "kim" in f.title
    assert "retries every ~30 s" in f.detail  # the stale saved password on the phone
    assert {"203.0.113.150", "10.0.10.40"} <= {e.split(" from ")[1].split(":")[0] for e in f.evidence}


def test_lockout_threshold_is_configurable() -> None:
    path = SAMPLES / "09a-wrong-password.pcapng"
    assert "lockout-risk" in ids(path)
    assert "lockout-risk" not in ids(path, thresholds=Thresholds(lockout_failures=4))
    assert "lockout-risk" not in ids(path, thresholds=Thresholds(lockout_window_s=10.0))


def test_password_spray_fast_and_slow() -> None:
    sprays = ids(SAMPLES / "10-password-spray.pcapng")["password-spray"]
    by_source = {f.title.split(" from ")[1].split(" ")[0]: f for f in sprays}
    assert set(by_source) == {"203.0.113.66", "198.51.100.201"}
    assert "slow" in by_source["198.51.100.201"].title
    assert "slow" not in by_source["203.0.113.66"].title
    # the spray that worked is visible too: walter's session succeeded without a second factor
    mfa = ids(SAMPLES / "10-password-spray.pcapng")["external-without-mfa"][0]
    assert any("walter" in e for e in mfa.evidence)


def test_ntlm_v1_and_kerberos_fallback() -> None:
    found = ids(SAMPLES / "09g-sip-register-4004.pcapng")
    assert "ntlm2-session" in found["ntlm-v1"][0].evidence[0]
    found = ids(SAMPLES / "12-internal-spn-missing.pcapng")
    (f,) = found["kerberos-fallback-ntlm"]
    assert "HTTP/lyncpool.contoso.com" in f.detail  # the SPN the KDC did not know


def test_server_configuration_and_passive_bypass() -> None:
    clean = ids(SAMPLES / "07-passive-adfs-2fa.pcap")
    assert "passive-with-other-methods" not in clean
    (cfg,) = clean["server-auth-methods"]
    assert "passive" in cfg.detail and "windows" not in cfg.detail
    bad = ids(SAMPLES / "09h-adfs-errors.pcapng")
    (f,) = bad["passive-with-other-methods"]
    assert f.severity == "high" and "windows" in f.detail


def test_anonymous_guests_are_reported_but_not_as_missing_mfa() -> None:
    found = ids(SAMPLES / "06-lwa-guests-anonymous.pcap")
    assert len(found["anonymous-access"][0].sessions) == 2
    assert "external-without-mfa" not in found


def run_audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lyncpcap", "audit", *args], capture_output=True, text=True, timeout=120)


def test_audit_exit_status_for_scripted_checks() -> None:
    assert run_audit(str(SAMPLES / "09b-locked-account.pcapng"), "--fail-on", "high").returncode == 3
    assert run_audit(str(SAMPLES / "01-desktop-internal-kerberos.pcapng"), "--fail-on", "medium").returncode == 0
    assert run_audit(str(SAMPLES / "12-internal-spn-missing.pcapng"), "--fail-on", "high").returncode == 0
    assert run_audit(str(SAMPLES / "12-internal-spn-missing.pcapng"), "--fail-on", "medium").returncode == 3
    bad = run_audit(str(SAMPLES / "01-desktop-internal-kerberos.pcapng"), "--fail-on", "low")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_audit_json_and_help_mentions_defaults() -> None:
    result = run_audit(str(SAMPLES / "10-password-spray.pcapng"), "--format", "json")
    doc = json.loads(result.stdout)
    assert {"password-spray", "external-domain-credentials"} <= {f["id"] for f in doc}
    help_text = " ".join(run_audit("--help").stdout.split())
    assert "--lockout-failures" in help_text and "[default: 3]" in help_text and "[default: 600.0]" in help_text
