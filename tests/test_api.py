"""The Python API: `lyncpcap.analyze()` and typed DataFrames an analyst can rely on."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import SAMPLES

import lyncpcap
from lyncpcap.model import AUTH_PROTOCOLS, OUTCOMES, STEPS

CAPTURE = SAMPLES / "10-password-spray.pcapng"


@pytest.fixture(scope="module")
def analysis() -> lyncpcap.Analysis:
    return lyncpcap.analyze(CAPTURE)


def test_sessions_frame_is_typed(analysis: lyncpcap.Analysis) -> None:
    df = analysis.sessions
    assert len(df) == 14
    assert isinstance(df["outcome"].dtype, pd.CategoricalDtype)
    assert list(df["outcome"].cat.categories) == list(OUTCOMES)
    assert list(df["auth_protocol"].cat.categories) == list(AUTH_PROTOCOLS)
    assert str(df["start"].dtype) == "datetime64[ns, UTC]"
    assert df["steps"].dtype == "Int64"
    assert df.loc["s1", "user"] == "CONTOSO\\alice"
    # what an analyst does first: count outcomes per client kind
    counts = df.groupby(["client_kind", "outcome"], observed=True).size()
    assert counts[("Script (Python)", "failure")] == 7
    assert counts[("Script (Python)", "success")] == 1


def test_steps_frame_is_typed_and_ordered(analysis: lyncpcap.Analysis) -> None:
    df = analysis.steps
    assert list(df["step"].cat.categories) == list(STEPS)
    assert df["frame"].dtype == "Int64"
    assert df["time"].is_monotonic_increasing
    assert set(df["step"].dropna()) <= {"webticket", "oauth"}
    assert (df["duration_s"] >= 0).all()


def test_auth_clients_and_findings_frames(analysis: lyncpcap.Analysis) -> None:
    clients = analysis.clients
    assert set(clients["kind"]) == {"Script (Python)", "Script (PowerShell)"}
    assert clients["sessions"].sum() == 14
    findings = analysis.findings
    assert findings["severity"].cat.ordered
    assert "password-spray" in set(findings["id"])
    auth = lyncpcap.analyze(SAMPLES / "02-desktop-external-ntlm.pcapng").auth
    assert list(auth["message"].astype(str).head(3)) == ["negotiate", "challenge", "authenticate"]
    assert auth.loc[auth["message"] == "authenticate", "user"].iloc[0] == "carol"
    assert auth["session"].notna().all()


def test_session_view_and_json(analysis: lyncpcap.Analysis) -> None:
    view = analysis.session("s1")
    assert len(view.steps) == 2  # alice was tried twice
    doc = view.to_json()
    assert doc["outcome"] == "failure" and doc["failure"]["step"] == "webticket"
    with pytest.raises(KeyError):
        analysis.session("s99")
    full = analysis.to_json()
    assert full["schema"] == 1 and len(full["sessions"]) == 14


def test_several_captures_make_one_analysis() -> None:
    a = lyncpcap.analyze([SAMPLES / "03-windows-phone-ntlm.pcap", SAMPLES / "08-ucwa-mobile-oauth.pcapng"])
    assert len(a.captures) == 2
    assert sorted(s.client_kind for s in a.session_list) == ["Lync 2013 Windows Phone", "Lync 2013 iOS"]
    assert {st["capture"] for s in a.to_json()["sessions"] for st in s["steps"]} == {0, 1}


def test_repr_and_mimebundle(analysis: lyncpcap.Analysis) -> None:
    assert "14 sessions" in repr(analysis)
    bundle = analysis._repr_mimebundle_()
    assert set(bundle) >= {"text/plain", "text/html"}
    assert "<table" in bundle["text/html"]
    assert len(bundle["text/html"]) < 200_000  # a summary, not a dump
