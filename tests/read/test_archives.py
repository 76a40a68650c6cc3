"""Fiddler SAZ and HAR archives: the lab's archive twins against their truth, the conventions for
frames and client addresses, what real exports contain, and one-line errors for damaged archives."""

from __future__ import annotations

import base64
import gzip
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SAMPLES, truth_path
from truth import differences, load

import lyncpcap
from lyncpcap.errors import CaptureError
from lyncpcap.inputs import InputKind, sniff
from lyncpcap.read import har, saz
from lyncpcap.read.saz import parse_timer

ARCHIVES = sorted([*SAMPLES.glob("*.saz"), *SAMPLES.glob("*.har")])
WEB_STEPS = {"autodiscover", "mex", "webticket", "oauth", "adfs", "certprov", "ucwa", "other"}


def test_the_lab_wrote_every_archive_twin() -> None:
    names = {p.name for p in ARCHIVES}
    for base in ("05-lwa-domain-user-soap", "06-lwa-guests-anonymous", "08-ucwa-mobile-oauth"):
        assert f"{base}-saz.saz" in names
    assert {"05-lwa-domain-user-soap-har.har", "08-ucwa-mobile-oauth-har.har",
            "06-lwa-guests-anonymous-guest1-har.har", "06-lwa-guests-anonymous-guest2-har.har"} <= names


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_archive_matches_its_truth(archive: Path) -> None:
    a = lyncpcap.analyze(archive)
    truth = load(truth_path(archive))
    problems = differences(a, truth)
    assert not problems, "\n".join(problems)
    info = a.captures[0]
    assert info.format == archive.suffix[1:] and info.decrypted and info.warnings == []
    assert all(s.transport == "tls" and s.url and s.url.startswith("https://") for s in a.step_list)


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_archive_truth_is_the_plaintext_truth_restricted_to_the_web(archive: Path) -> None:
    truth = load(truth_path(archive))
    plain = load(SAMPLES / f"{truth['archive_of']}.truth.json")
    assert truth["sessions"]
    unused = list(plain["sessions"])
    for session in truth["sessions"]:
        web = [o for o in unused if [s for s in o["steps"] if s["step"] in WEB_STEPS] == session["steps"]
               and all(o[k] == session[k] for k in ("user", "auth_protocol", "outcome", "failure"))]
        assert web, session
        original = web[0]
        unused.remove(original)
        assert {s["step"] for s in original["steps"]} - WEB_STEPS <= {"dns", "kerberos", "sip-register"}
        want = f"har:{archive.name}" if archive.suffix == ".har" else original["client"]["address"]
        assert session["client"] == {**original["client"], "address": want}


def test_saz_conventions_session_numbers_and_client_ip() -> None:
    path = SAMPLES / "06-lwa-guests-anonymous-saz.saz"
    with zipfile.ZipFile(path) as z:
        meta = z.read("raw/01_m.xml").decode()
        first_line = z.read("raw/01_c.txt").split(b"\r\n", 1)[0]
    assert 'N="x-clientip" V="::ffff:198.51.100.140"' in meta
    assert first_line.startswith(b"GET https://meet.contoso.com/meet/gina/")
    archive = saz.read(path)
    assert [x.number for x in archive.exchanges] == list(range(1, 12))
    assert {x.client for x in archive.exchanges} == {"198.51.100.140", "198.51.100.141"}
    a = lyncpcap.analyze(path)
    assert sorted(s.frame for s in a.step_list) == list(range(1, 12))
    assert {s.client_address for s in a.session_list} == {"198.51.100.140", "198.51.100.141"}
    first = a.step_list[0]
    assert first.url is not None and first.url.startswith("https://meet.contoso.com/meet/gina/")
    assert first.time == pytest.approx(parse_timer("2014-02-20T10:30:05.1508760+00:00"), abs=1.0)


def test_har_conventions_entry_numbers_and_file_client() -> None:
    path = SAMPLES / "08-ucwa-mobile-oauth-har.har"
    doc = json.loads(path.read_text())
    entries = doc["log"]["entries"]
    a = lyncpcap.analyze(path)
    assert sorted(s.frame for s in a.step_list) == list(range(1, len(entries) + 1))
    assert {s.client for s in a.step_list} == {f"har:{path.name}"}
    [session] = a.session_list
    assert session.user_agent and session.user_agent.startswith("Lync/5.6.1 (iPhone")
    assert session.steps[0].time == pytest.approx(
        parse_timer(entries[0]["startedDateTime"].replace("Z", "+00:00")), abs=1e-3
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2014-02-20T11:30:05.1234567+00:00", 1392895805.1234567),
        ("2014-02-20T12:30:05.1234567+01:00", 1392895805.1234567),
        ("2014-02-20T06:30:05.5-05:00", 1392895805.5),
        ("2014-02-20T11:30:05Z", 1392895805.0),
        ("2014-02-20T11:30:05", 1392895805.0),
        ("0001-01-01T00:00:00", None),
        ("1969-12-31T23:59:59Z", None),  # before any capture, after one: damaged, as if unset
        ("2200-01-01T00:00:00", None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_fiddler_timers(text: str, value: float | None) -> None:
    got = parse_timer(text)
    assert got == (pytest.approx(value, abs=1e-6) if value is not None else None)


# -- what other tools write ------------------------------------------------------------------------


def _chrome_har(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
                                        "pages": [], "entries": entries}}))
    return path


def _entry(url: str, started: str, *, method: str = "GET", status: int = 200, headers: list[dict[str, str]] | None = None,
           content: dict[str, Any] | None = None, http: str = "http/2.0", post: str | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"method": method, "url": url, "httpVersion": http, "headers": headers or [],
                           "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0}
    if post is not None:
        req["postData"] = {"mimeType": "application/x-www-form-urlencoded;charset=UTF-8", "text": post}
    return {
        "_initiator": {"type": "script"}, "_priority": "High", "_resourceType": "xhr", "cache": {}, "connection": "412",
        "request": req,
        "response": {"status": status, "statusText": "", "httpVersion": http, "headers": [],
                     "cookies": [], "content": content or {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
                     "headersSize": -1, "bodySize": -1, "_transferSize": 0, "_error": None},
        "serverIPAddress": "[2001:db8:113::10]", "startedDateTime": started, "time": 120.5,
        "timings": {"blocked": 1.2, "dns": -1, "ssl": -1, "connect": -1, "send": 0.1, "wait": 100.0, "receive": 19.2,
                    "_blocked_queueing": 0.5},
    }


def test_chrome_http2_har(tmp_path: Path) -> None:
    """HTTP/2 pseudo-headers instead of Host, a base64 body, a blocked request (status 0)."""
    token = json.dumps({"access_token": "cwt=AAEBHAEFAAAAAAAFFQAAAA", "expires_in": 28799, "token_type": "Bearer"}).encode()
    h2 = [{"name": ":authority", "value": "lyncweb.contoso.com"}, {"name": ":method", "value": "POST"},
          {"name": ":path", "value": "/WebTicket/oauthtoken"}, {"name": ":scheme", "value": "https"},
          {"name": "user-agent", "value": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0"},
          {"name": "x-ms-origin", "value": "https://lyncweb.contoso.com"}]
    path = _chrome_har(tmp_path / "chrome.har", [
        _entry("https://lyncweb.contoso.com/WebTicket/oauthtoken", "2024-03-01T09:15:02.250+01:00", method="POST",
               headers=h2, post="grant_type=password&username=alice%40contoso.com&password=Secret-1",
               content={"size": len(token), "mimeType": "application/json", "encoding": "base64",
                        "text": base64.b64encode(token).decode()}),
        _entry("https://lyncweb.contoso.com/ucwa/oauth/v1/applications", "2024-03-01T08:15:02.900Z", status=0),
        _entry("wss://lyncweb.contoso.com/socket", "2024-03-01T08:15:03.000Z", http="http/1.1"),
    ])
    archive = har.read(path)
    assert archive.warnings == ["1 HAR entries skipped (CONNECT or not http/https)"]
    first, blocked = archive.exchanges
    req = first.exchange.request
    assert (req.method, req.host, req.path, req.version) == ("POST", "lyncweb.contoso.com", "/WebTicket/oauthtoken", "HTTP/2")
    assert not any(k.startswith(":") for k, _ in req.headers)
    assert req.first_ts == pytest.approx(1709280902.25) and req.ts == pytest.approx(1709280902.2513)
    assert first.exchange.response is not None and first.exchange.response.body == token
    assert first.exchange.response.ts == pytest.approx(1709280902.3705)
    assert first.server == "2001:db8:113::10" and first.server_port == 443 and first.scheme == "https"
    assert blocked.exchange.response is None
    a = lyncpcap.analyze(path)
    step = next(s for s in a.step_list if s.frame == 1)
    assert (step.step, step.auth, step.status) == ("oauth", "password", 200)


def test_har_timings_that_are_damage_are_read_as_absent(tmp_path: Path) -> None:
    """JSON readers accept Infinity, and a damaged number can be 1e300: such a duration (or one over
    a day) counts as absent, like HAR's own -1, instead of stamping the response in no year."""
    entry = _entry("https://lyncweb.contoso.com/WebTicket/oauthtoken", "2024-03-01T08:15:02.250Z", http="http/1.1")
    entry["time"] = 1e300
    entry["timings"]["wait"] = float("inf")
    entry["timings"]["receive"] = 90_000_000.0
    path = _chrome_har(tmp_path / "damaged-timings.har", [entry])
    (only,) = har.read(path).exchanges
    req, resp = only.exchange.request, only.exchange.response
    assert resp is not None
    assert req.ts == pytest.approx(1709280902.2513) and resp.ts == req.ts
    doc = lyncpcap.analyze(path).to_json()
    (session,) = doc["sessions"]
    assert [(s["time"], s["duration_s"]) for s in session["steps"]] == [("2024-03-01T08:15:02.250000Z", 0.0013)]


def test_saz_of_connect_tunnels_says_https_was_not_decrypted(tmp_path: Path) -> None:
    path = tmp_path / "tunnels.saz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("raw/1_c.txt", b"CONNECT lyncweb.contoso.com:443 HTTP/1.1\r\nHost: lyncweb.contoso.com:443\r\n\r\n")
        z.writestr("raw/1_s.txt", b"HTTP/1.1 200 Connection Established\r\nFiddlerGateway: Direct\r\n\r\n")
        z.writestr("raw/1_m.xml", '<Session SID="1"><SessionTimers ClientBeginRequest="2024-03-01T09:00:00.0000000+01:00"/>'
                                  '<SessionFlags><SessionFlag N="x-clientip" V="127.0.0.1"/></SessionFlags></Session>')
    a = lyncpcap.analyze(path)
    assert not a.step_list
    [warning] = a.captures[0].warnings
    assert warning.startswith("1 CONNECT tunnel(s) (e.g. to lyncweb.contoso.com:443) and no decrypted HTTPS")


def test_saz_with_origin_form_requests(tmp_path: Path) -> None:
    """Some tools write the request line as the server got it; the flags say it was HTTPS."""
    path = tmp_path / "origin.saz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("raw/07_c.txt", b"GET /Autodiscover/AutodiscoverService.svc/root?originalDomain=contoso.com HTTP/1.1\r\n"
                                   b"Host: lyncweb.contoso.com\r\nAccept: application/json\r\n\r\n")
        z.writestr("raw/07_s.txt", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"2\r\n{}\r\n0\r\n\r\n")
        z.writestr("raw/07_m.xml", '<Session SID="7"><SessionTimers ClientBeginRequest="2024-03-01T09:00:00.0000000+01:00" '
                                   'ClientDoneResponse="2024-03-01T09:00:00.2500000+01:00"/><SessionFlags>'
                                   '<SessionFlag N="x-https" V="1"/><SessionFlag N="x-clientip" V="10.1.2.3"/>'
                                   '</SessionFlags></Session>')
    [x] = saz.read(path).exchanges
    assert (x.number, x.client, x.scheme, x.server, x.server_port) == (7, "10.1.2.3", "https", "lyncweb.contoso.com", 443)
    assert x.exchange.response is not None and x.exchange.response.body == b"{}"
    assert x.exchange.response.ts - x.exchange.request.first_ts == pytest.approx(0.25)


# -- what the input is ------------------------------------------------------------------------------


def test_inputs_are_sniffed_from_content(tmp_path: Path) -> None:
    har_copy = tmp_path / "capture.pcap"  # a HAR with a misleading name
    har_copy.write_bytes(b"\xef\xbb\xbf  \n" + (SAMPLES / "05-lwa-domain-user-soap-har.har").read_bytes())
    gz = tmp_path / "browser.har.gz"
    gz.write_bytes(gzip.compress((SAMPLES / "05-lwa-domain-user-soap-har.har").read_bytes()))
    pcap_gz = tmp_path / "x.gz"
    pcap_gz.write_bytes(gzip.compress((SAMPLES / "06-lwa-guests-anonymous.pcap").read_bytes()))
    saz_named_har = tmp_path / "session.har"
    saz_named_har.write_bytes((SAMPLES / "08-ucwa-mobile-oauth-saz.saz").read_bytes())
    cases = {
        SAMPLES / "06-lwa-guests-anonymous.pcap": InputKind.CAPTURE,
        SAMPLES / "05-lwa-domain-user-soap.pcapng": InputKind.CAPTURE,
        pcap_gz: InputKind.CAPTURE,
        har_copy: InputKind.HAR,
        gz: InputKind.HAR_GZIP,
        saz_named_har: InputKind.SAZ,
    }
    for path, kind in cases.items():
        assert sniff(path) is kind, path
    [session] = lyncpcap.analyze(har_copy).session_list
    assert session.client_address == "har:capture.pcap" and session.user == "CONTOSO\\gina"
    assert lyncpcap.analyze(gz).captures[0].format == "har"
    assert lyncpcap.analyze(saz_named_har).captures[0].format == "saz"


# -- damaged archives: one line naming the file ----------------------------------------------------


def _zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _damaged_saz(path: Path, how: str) -> Path:
    """A sample SAZ with one byte changed: the first member's deflate stream made invalid (a block of
    the reserved type), or the central directory asking for a zip version no reader knows."""
    raw = bytearray((SAMPLES / "05-lwa-domain-user-soap-saz.saz").read_bytes())
    if how == "deflate":
        with zipfile.ZipFile(SAMPLES / "05-lwa-domain-user-soap-saz.saz") as z:
            info = next(i for i in z.infolist() if i.filename.endswith("_c.txt") and i.compress_type == zipfile.ZIP_DEFLATED)
        name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
        raw[info.header_offset + 30 + name_len + extra_len] = 0x07  # final block, type 3 (reserved)
    else:
        raw[raw.index(b"PK\x01\x02") + 6] = 0xFF  # version needed to extract: 25.5
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("version.saz", lambda p: _damaged_saz(p, "version"), "not a readable Fiddler SAZ archive (damaged zip: zip file version"),
        ("notes.zip", lambda p: _zip(p, {"readme.txt": "hello"}), "a zip archive: extract the capture first"),
        ("meta.saz", lambda p: _zip(p, {"raw/01_c.txt": b"GET http://a/ HTTP/1.1\r\n\r\n", "raw/01_m.xml": "<Session"}),
         "damaged SAZ session metadata"),
        ("timers.saz", lambda p: _zip(p, {"raw/01_c.txt": b"GET http://a/ HTTP/1.1\r\n\r\n", "raw/01_m.xml": "<Session/>"}),
         "no ClientBeginRequest timer"),
        ("cut.saz", lambda p: p.write_bytes((SAMPLES / "05-lwa-domain-user-soap-saz.saz").read_bytes()[:3000]),
         "not a readable Fiddler SAZ archive"),
        ("bad.har", lambda p: p.write_text('{"log": {"entries": [}'), "not a HAR file: invalid JSON at line 1 column 22"),
        ("other.har", lambda p: p.write_text('{"name": "package.json"}'), "not a HAR file: no log.entries list"),
        ("entry.har", lambda p: _chrome_har(p, [{**_entry("https://a/", "x"), "startedDateTime": None},
                                                 {**_entry("https://a/", "x"), "startedDateTime": None}]),
         "HAR entry 1 startedDateTime is missing (and 1 more entries)"),
        ("zone.har", lambda p: _chrome_har(p, [_entry("https://a/", "2024-03-01T08:15:02")]),
         "HAR entry 1 startedDateTime '2024-03-01T08:15:02' has no time zone"),
    ],
)
def test_damaged_archive_is_one_line(name: str, make: Any, message: str, tmp_path: Path) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(CaptureError) as err:
        lyncpcap.analyze(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text


def test_a_damaged_saz_member_loses_only_its_session(tmp_path: Path) -> None:
    """A session whose member's deflate stream is broken is skipped and named; the rest is analysed."""
    path = _damaged_saz(tmp_path / "deflate.saz", "deflate")
    reference = lyncpcap.analyze(SAMPLES / "05-lwa-domain-user-soap-saz.saz")
    a = lyncpcap.analyze(path)
    assert [s.frame for s in a.step_list] == [s.frame for s in reference.step_list if s.frame != 1]
    [warning] = a.captures[0].warnings
    assert warning.startswith("1 damaged session(s) skipped (e.g. damaged SAZ member raw/01_c.txt")


def test_cli_damaged_har_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.har"
    bad.write_text("{ not json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "lyncpcap", "analyze", str(bad), "--format", "json"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert str(bad) in line and "not a HAR file" in line
