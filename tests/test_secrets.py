"""No output carries a secret unless --reveal-secrets is given (CONTRACT.md, "Secrets").

Every format of every command is rendered for every sample capture and searched for each truth
file's `secrets` (and their base64 / URL-encoded / JSON- / HTML-escaped forms); with
--reveal-secrets the same outputs must show them.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import sample_captures, truth_path
from truth import load
from typer.testing import CliRunner

import lyncpcap
from lyncpcap.cli import app
from lyncpcap.lab import build, scenarios
from lyncpcap.report import frames

CAPTURES = [c for c in sample_captures() if load(truth_path(c))["secrets"]]
FORMATS = ["table", "json", "jsonl", "csv", "markdown", "html"]


def variants(secret: str) -> set[str]:
    """The forms a secret could take in an output."""
    out = {secret, quote(secret, safe=""), quote(secret), html.escape(secret), json.dumps(secret)[1:-1]}
    if len(secret) >= 6:
        out.add(base64.b64encode(secret.encode()).decode())
    return {v for v in out if len(v) >= 4}


RUNNER = CliRunner()


def cli(*args: str) -> str:
    """The command line, in-process (the same code path as the console script, without the start-up)."""
    result = RUNNER.invoke(app, list(args))
    assert result.exit_code in (0, 3), (result.output, result.exception)
    return result.output


def render_all(capture: Path, tmp: Path, reveal: bool) -> dict[str, str]:
    extra = ["--reveal-secrets"] if reveal else []
    outputs = {}
    for fmt in FORMATS:
        outputs[fmt] = cli("analyze", str(capture), "--format", fmt, *extra)
    outputs["timeline"] = cli("timeline", str(capture), *extra)
    outputs["mermaid"] = cli("timeline", str(capture), "--format", "mermaid", *extra)
    outputs["audit"] = cli("audit", str(capture), "--format", "json", *extra) if reveal is False else ""
    csv_dir = tmp / ("csv-reveal" if reveal else "csv")
    cli("analyze", str(capture), "--format", "csv", "--output", str(csv_dir), *extra)
    outputs["csv-dir"] = "\n".join(p.read_text() for p in sorted(csv_dir.glob("*.csv")))
    return outputs


def normalised(fmt: str, text: str) -> str:
    """Undo the escaping a format applies, so a revealed secret can be found verbatim."""
    if fmt in ("json", "audit"):
        return json.dumps(json.loads(text), ensure_ascii=False) + "\n" + _strings(json.loads(text))
    if fmt == "jsonl":
        return "\n".join(_strings(json.loads(line)) for line in text.splitlines() if line.strip())
    if fmt in ("csv", "csv-dir"):
        return "\n".join(" ".join(row) for row in csv.reader(io.StringIO(text)))
    if fmt in ("html", "markdown", "mermaid"):
        return html.unescape(text)
    return text


def _strings(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_strings(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_strings(v) for v in value)
    return ""


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_no_secret_in_any_output_and_all_revealed_on_request(capture: Path, tmp_path: Path) -> None:
    secrets = load(truth_path(capture))["secrets"]
    redacted = render_all(capture, tmp_path, reveal=False)
    for fmt, text in redacted.items():
        for secret in secrets:
            for form in variants(secret):
                assert form not in text, f"{fmt} output leaks {secret[:12]}… (as {form[:20]}…)"
    assert "«redacted sha256:" in redacted["json"]
    revealed = render_all(capture, tmp_path, reveal=True)
    for fmt in ("json", "jsonl", "html", "markdown"):
        text = normalised(fmt, revealed[fmt])
        missing = [s[:16] for s in secrets if s not in text]
        assert not missing, f"--reveal-secrets {fmt} output does not show {missing}"


@pytest.mark.parametrize("capture", CAPTURES[:4], ids=lambda p: p.stem)
def test_dataframes_and_reprs_hold_no_secret(capture: Path) -> None:
    secrets = load(truth_path(capture))["secrets"]
    a = lyncpcap.analyze(capture)
    texts = [
        a.sessions.to_csv(),
        a.steps.to_csv(),
        a.auth.to_csv(),
        a.findings.to_csv(),
        frames.steps_frame(a.step_list).to_json(date_format="iso"),
        repr(a.step_list),
        repr(a.session_list),
        str(a._repr_mimebundle_()),
    ]
    for text in texts:
        for secret in secrets:
            for form in variants(secret):
                assert form not in text


def test_redacted_values_keep_a_matching_fingerprint() -> None:
    """The same password used twice shows the same fingerprint (repeated use stays visible)."""
    capture = next(c for c in CAPTURES if "password-spray" in c.name)
    doc = lyncpcap.analyze(capture).to_json()
    details = [st["detail"] for s in doc["sessions"] for st in s["steps"] if "UsernameToken" in st["detail"]]
    fingerprints = [d.split("«redacted sha256:")[1][:8] for d in details]
    assert len(fingerprints) == 10
    assert len(set(fingerprints)) == 2  # "Winter2014!" for eight accounts, "Spring2014!" for two


@pytest.mark.parametrize("name", ["07-passive-adfs-2fa", "08-ucwa-mobile-oauth", "09h-adfs-errors"])
def test_no_secret_from_http2_traffic_either(name: str, tmp_path: Path) -> None:
    """The same sign-ins spoken as HTTP/2 (a browser to IIS 10): the passwords in AD FS forms and
    OAuth grants, the tokens in HPACK-encoded headers are redacted the same way, and shown on
    request."""
    spec = next(s for s in scenarios.CATALOGUE if s.name == name)
    written = build.build_one(dataclasses.replace(spec, http2=True), tmp_path / "built")
    capture = next(p for p in written if p.suffix in (".pcap", ".pcapng"))
    secrets = load(next(p for p in written if p.name.endswith(".truth.json")))["secrets"]
    assert secrets
    for fmt, text in render_all(capture, tmp_path, reveal=False).items():
        for secret in secrets:
            assert not [form for form in variants(secret) if form in text], f"{fmt} output leaks {secret[:12]}…"
    revealed = normalised("json", render_all(capture, tmp_path, reveal=True)["json"])
    assert all(s in revealed for s in secrets)


def test_a_token_in_a_redirects_fragment_is_redacted(tmp_path: Path) -> None:
    """The OAuth implicit flow answers with `Location: …#access_token=…&token_type=Bearer`: the
    redirect a step reports carries the fragment, redacted."""
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.implicit-flow-token"
    entry = {
        "startedDateTime": "2024-03-01T08:15:02.000Z", "time": 80,
        "request": {"method": "GET", "url": "https://adfs.contoso.com/adfs/oauth2/authorize?client_id=lync&response_type=token",
                    "httpVersion": "HTTP/1.1", "headers": [{"name": "User-Agent", "value": "Mozilla/5.0"}]},
        "response": {"status": 302, "statusText": "Found", "httpVersion": "HTTP/1.1",
                     "headers": [{"name": "Location", "value": f"https://lyncweb.contoso.com/#access_token={token}&token_type=Bearer"}],
                     "content": {"size": 0, "mimeType": "text/html"}, "redirectURL": ""},
        "timings": {"send": 1, "wait": 70, "receive": 9},
    }  # fmt: skip
    path = tmp_path / "implicit.har"
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": [entry]}}), encoding="utf-8")
    redacted = cli("analyze", str(path), "--format", "json")
    assert "redirect" in redacted.lower() and "lyncweb.contoso.com" in redacted
    assert token not in redacted and "access_token=«redacted sha256:" in redacted
