"""What the real tools write into HTTP archives that the lab's archive twins do not show: Fiddler's
own error responses and tunnels, bodies Fiddler half-decoded, damaged or encrypted sessions, huge
downloads beside the sign-in; Firefox's and Chrome's HAR habits, text bodies in UTF-16, cached
entries, fragments, files cut short, and HARs far larger than the sign-in in them."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES

import lyncpcap
from lyncpcap.errors import CaptureError
from lyncpcap.lab import lync
from lyncpcap.read import har, saz

# -- Fiddler SAZ ------------------------------------------------------------------------------------

ROOT_JSON = json.dumps({"_links": {
    "self": {"href": "https://lyncweb.contoso.com/Autodiscover/AutodiscoverService.svc/root?originalDomain=contoso.com"},
    "user": {"href": "https://lyncweb.contoso.com/Autodiscover/AutodiscoverService.svc/root/oauth/user?originalDomain=contoso.com"},
}}).encode()

AUTODISCOVER = (b"GET https://lyncdiscover.contoso.com/?sipuri=alice@contoso.com HTTP/1.1\r\n"
                b"Host: lyncdiscover.contoso.com\r\nAccept: application/vnd.microsoft.rtc.autodiscover+xml;v=1\r\n"
                b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0\r\n\r\n")

ROOT_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.microsoft.rtc.autodiscover+xml; v=1\r\nServer: Microsoft-IIS/8.5\r\n"

# Fiddler's answer when it could not reach the server: its own 502, the body padded with spaces
CONNECTION_FAILED = (
    b"HTTP/1.1 502 Fiddler - Connection Failed\r\nDate: Fri, 01 Mar 2024 08:00:21 GMT\r\n"
    b"Content-Type: text/html; charset=UTF-8\r\nConnection: close\r\nCache-Control: no-cache, must-revalidate\r\n"
    b"Timestamp: 09:00:21.456\r\n\r\n"
    b"[Fiddler] The connection to 'lyncdiscover.contoso.com' failed. <br />Error: TimedOut (0x274c). <br />"
    b"System.Net.Sockets.SocketException A connection attempt failed because the connected party did not properly "
    b"respond after a period of time 203.0.113.10:443" + b" " * 120
)
DNS_FAILED = (
    b"HTTP/1.1 502 Fiddler - DNS Lookup Failed\r\nDate: Fri, 01 Mar 2024 08:00:21 GMT\r\n"
    b"Content-Type: text/html; charset=UTF-8\r\nConnection: close\r\nCache-Control: no-cache, must-revalidate\r\n"
    b"Timestamp: 09:00:21.456\r\n\r\n"
    b'[Fiddler] DNS Lookup for "lyncdiscover.contoso.com" failed. System.Net.Sockets.SocketException No such host is known'
    + b" " * 200
)
# a CONNECT session as Fiddler stores it: its text about the client's TLS hello as the request's body
CONNECT = (
    b"CONNECT lyncdiscover.contoso.com:443 HTTP/1.1\r\nHost: lyncdiscover.contoso.com:443\r\nConnection: keep-alive\r\n"
    b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0\r\n\r\n"
    b"A SSLv3-compatible ClientHello handshake was found. Fiddler extracted the parameters below.\r\n\r\n"
    b"Version: 3.3 (TLS/1.2)\r\nRandom: 5E 2A 11 C4\r\nSessionID: empty\r\nExtensions: \r\n"
    b"\tserver_name\tlyncdiscover.contoso.com\r\nCiphers: \r\n\t[C02C]\tTLS1_CK_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\r\n"
)
TUNNEL_OPEN = (
    b"HTTP/1.1 200 Connection Established\r\nFiddlerGateway: Direct\r\nStartTime: 09:00:00.050\r\nConnection: close\r\n\r\n"
    b"Encrypted HTTPS traffic flows through this CONNECT tunnel. HTTPS Decryption is enabled in Fiddler, so decrypted "
    b"sessions running in this tunnel will be shown in the Web Sessions list.\r\n\r\nSecure Protocol: Tls12\r\n"
)


def _meta(number: int, begin: str = "2024-03-01T09:00:00.1000000+01:00", done: str = "2024-03-01T09:00:00.3000000+01:00") -> str:
    """raw/NN_m.xml as Fiddler Classic writes it (timers in local time with their offset)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n'
        f'<Session SID="{number}" BitFlags="0"><SessionTimers ClientConnected="{begin}" ClientBeginRequest="{begin}" '
        f'GotRequestHeaders="{begin}" ClientDoneRequest="{begin}" ServerConnected="{begin}" FiddlerBeginRequest="{begin}" '
        f'ServerGotRequest="{begin}" ServerBeginResponse="{done}" GotResponseHeaders="{done}" ServerDoneResponse="{done}" '
        f'ClientBeginResponse="{done}" ClientDoneResponse="{done}" GatewayTime="0" DNSTime="0" TCPConnectTime="0" '
        f'HTTPSHandshakeTime="0" /><PipeInfo /><SessionFlags><SessionFlag N="x-responsebodytransferlength" V="0" />'
        f'<SessionFlag N="x-clientport" V="{51000 + number}" /><SessionFlag N="x-clientip" V="::ffff:10.0.0.5" />'
        f'<SessionFlag N="ui-comments" V="sign-in attempt" /></SessionFlags></Session>'
    )


def _saz(path: Path, sessions: dict[str, tuple[bytes | None, bytes | None, str | None]]) -> Path:
    """A SAZ of sessions keyed by their file stem ("1", "02", "0003"): request, response, metadata."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for stem, (request, response, meta) in sessions.items():
            if request is not None:
                z.writestr(f"raw/{stem}_c.txt", request)
            if response is not None:
                z.writestr(f"raw/{stem}_s.txt", response)
            if meta is not None:
                z.writestr(f"raw/{stem}_m.xml", meta)
    return path


def _chunked(data: bytes, size: int = 64) -> bytes:
    return b"".join(b"%x\r\n" % len(data[i : i + size]) + data[i : i + size] + b"\r\n" for i in range(0, len(data), size)) + b"0\r\n\r\n"


@pytest.mark.parametrize("answer", [CONNECTION_FAILED, DNS_FAILED], ids=["connection-failed", "dns-lookup-failed"])
def test_saz_a_response_fiddler_wrote_itself_is_the_proxy_failing(answer: bytes, tmp_path: Path) -> None:
    """Fiddler's own 502 is Fiddler, the client's forward proxy, failing to reach the server, not a
    reverse proxy that could not reach the Front End."""
    path = _saz(tmp_path / "fiddler-502.saz", {"1": (AUTODISCOVER, answer, _meta(1))})
    a = lyncpcap.analyze(path)
    [session] = a.session_list
    [step] = session.steps
    assert (step.step, step.frame, step.status, step.result) == ("autodiscover", 1, 502, "failure")
    assert session.outcome == "failure" and session.failure is not None
    assert "forward proxy could not reach lyncdiscover.contoso.com" in session.failure["reason"]
    assert "reverse proxy" not in session.failure["reason"]
    [warning] = a.captures[0].warnings
    assert warning.startswith("1 response(s) written by Fiddler itself, not by the server")
    assert "session 1" in warning and "lyncdiscover.contoso.com" in warning


def test_saz_a_tunnel_fiddler_could_not_open_is_kept(tmp_path: Path) -> None:
    """Without HTTPS decryption the only trace of an unreachable server is the CONNECT Fiddler
    answered with its 502; an opened tunnel (with Fiddler's text about the TLS hello as its body)
    is still no request of its own."""
    path = _saz(tmp_path / "tunnels.saz", {
        "1": (CONNECT, TUNNEL_OPEN, _meta(1)),
        "2": (CONNECT.replace(b"lyncdiscover.", b"lyncdiscoverinternal."), CONNECTION_FAILED, _meta(2)),
    })
    a = lyncpcap.analyze(path)
    [step] = a.step_list
    assert (step.frame, step.method, step.status, step.result) == (2, "CONNECT", 502, "failure")
    [session] = a.session_list
    assert session.failure is not None and "could not reach lyncdiscoverinternal.contoso.com:443" in session.failure["reason"]
    assert any(w.startswith("1 CONNECT tunnel(s) (e.g. to lyncdiscover.contoso.com:443) and no decrypted HTTPS")
               for w in a.captures[0].warnings)


@pytest.mark.parametrize(
    "response",
    [
        # Fiddler decoded the body (Decode) and left Transfer-Encoding: chunked behind
        ROOT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + ROOT_JSON,
        # decoded from gzip: the body longer than the Content-Length the server sent
        ROOT_HEAD + b"Content-Length: 120\r\n\r\n" + ROOT_JSON,
        # not decoded: chunked and gzip'd as the server sent it
        ROOT_HEAD + b"Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + _chunked(gzip.compress(ROOT_JSON)),
    ],
    ids=["chunked-header-left", "stale-content-length", "raw-chunked-gzip"],
)
def test_saz_a_body_is_the_file_whatever_fiddler_left_in_the_headers(response: bytes, tmp_path: Path) -> None:
    path = _saz(tmp_path / "decoded.saz", {"01": (AUTODISCOVER, response, _meta(1))})
    [step] = lyncpcap.analyze(path).step_list
    assert (step.step, step.status) == ("autodiscover", 200)
    assert step.detail == "root: self, user"


def test_saz_a_brotli_body_is_named(tmp_path: Path) -> None:
    response = ROOT_HEAD + b"Content-Encoding: br\r\nContent-Length: 9\r\n\r\n\x1b\x0b\x00\xf8\xa5\x02\x00\x00\x00"
    path = _saz(tmp_path / "br.saz", {"1": (AUTODISCOVER, response, _meta(1))})
    a = lyncpcap.analyze(path)
    assert [s.status for s in a.step_list] == [200]
    [warning] = a.captures[0].warnings
    assert "brotli" in warning and "session 1" in warning and "Decode" in warning


def test_saz_session_numbers_of_any_width_and_a_session_without_answer(tmp_path: Path) -> None:
    path = _saz(tmp_path / "widths.saz", {
        "1": (AUTODISCOVER, ROOT_HEAD + b"Content-Length: %d\r\n\r\n" % len(ROOT_JSON) + ROOT_JSON, _meta(1)),
        "0002": (AUTODISCOVER, None, _meta(2, "2024-03-01T09:00:01.1000000+01:00", "2024-03-01T09:00:01.2000000+01:00")),
        "03": (AUTODISCOVER, b"", _meta(3, "2024-03-01T09:00:02.1000000+01:00", "2024-03-01T09:00:02.2000000+01:00")),
    })
    a = lyncpcap.analyze(path)
    assert [(s.frame, s.status, s.result) for s in a.step_list] == [(1, 200, "info"), (2, None, "none"), (3, None, "none")]
    assert a.captures[0].warnings == []
    assert {s.client_address for s in a.session_list} == {"10.0.0.5"}


def test_saz_a_damaged_session_costs_only_itself(tmp_path: Path) -> None:
    """Metadata that is not XML, a session without timers, a member whose deflate stream is broken:
    each is skipped, counted and named; the other sessions are analysed."""
    good = ROOT_HEAD + b"Content-Length: %d\r\n\r\n" % len(ROOT_JSON) + ROOT_JSON
    path = _saz(tmp_path / "damaged.saz", {
        "1": (AUTODISCOVER, good, _meta(1)),
        "2": (AUTODISCOVER, good, "<Session SID="),
        "3": (AUTODISCOVER, good, '<Session SID="3"><SessionTimers ClientBeginRequest="0001-01-01T00:00:00" /></Session>'),
        "4": (AUTODISCOVER, good, _meta(4, "2024-03-01T09:00:04.1000000+01:00", "2024-03-01T09:00:04.2000000+01:00")),
        "5": (AUTODISCOVER, good, _meta(5, "2024-03-01T09:00:05.1000000+01:00", "2024-03-01T09:00:05.2000000+01:00")),
    })
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("raw/5_s.txt")
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    raw[info.header_offset + 30 + name_len + extra_len] = 0x07  # final block of the reserved type
    path.write_bytes(bytes(raw))
    a = lyncpcap.analyze(path)
    assert [(s.frame, s.step, s.detail) for s in a.step_list] == [(1, "autodiscover", "root: self, user"),
                                                                   (4, "autodiscover", "root: self, user")]
    [warning] = a.captures[0].warnings
    assert warning.startswith("3 damaged session(s) skipped (e.g. damaged SAZ session metadata: raw/2_m.xml")


def test_saz_a_huge_download_beside_the_sign_in_is_cut_not_refused(tmp_path: Path) -> None:
    """A capture of a whole machine holds downloads of hundreds of MB; the sign-in beside it is read
    (only the start of the big body is, as for packets)."""
    path = tmp_path / "download.saz"
    good = ROOT_HEAD + b"Content-Length: %d\r\n\r\n" % len(ROOT_JSON) + ROOT_JSON
    _saz(path, {"1": (AUTODISCOVER, good, _meta(1))})
    big = 260 << 20
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("raw/2_c.txt", b"GET https://download.windowsupdate.com/big.cab HTTP/1.1\r\nHost: download.windowsupdate.com\r\n\r\n")
        z.writestr("raw/2_m.xml", _meta(2, "2024-03-01T09:00:01.1000000+01:00", "2024-03-01T09:00:09.2000000+01:00"))
        with z.open(zipfile.ZipInfo("raw/2_s.txt", (2024, 3, 1, 9, 0, 0)), "w", force_zip64=True) as f:
            f.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-cab-compressed\r\nContent-Length: %d\r\n\r\n" % big)
            block = bytes(1 << 20)
            for _ in range(big >> 20):
                f.write(block)
    a = lyncpcap.analyze(path)
    assert [(s.frame, s.step, s.status) for s in a.step_list] == [(1, "autodiscover", 200), (2, "other", 200)]
    assert a.step_list[0].detail == "root: self, user"


def _encrypted(path: Path, members: dict[str, bytes | str]) -> Path:
    """A zip as an AES-encrypting writer (DotNetZip, which Fiddler uses) leaves it: every member
    flagged encrypted, compression method 99 and the 0x9901 AES extra field."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2024, 3, 1, 9, 0, 0))
            info.extra = b"\x01\x99\x07\x00\x02\x00AE\x03\x08\x00"
            z.writestr(info, data)
    raw = bytearray(path.read_bytes())
    for m in re.finditer(rb"PK\x03\x04", bytes(raw)):
        raw[m.start() + 6] |= 1
        raw[m.start() + 8 : m.start() + 10] = (99).to_bytes(2, "little")
    for m in re.finditer(rb"PK\x01\x02", bytes(raw)):
        raw[m.start() + 8] |= 1
        raw[m.start() + 10 : m.start() + 12] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


def test_saz_password_protected_is_one_clear_line(tmp_path: Path) -> None:
    path = _encrypted(tmp_path / "protected.saz", {"raw/01_c.txt": AUTODISCOVER, "raw/01_m.xml": _meta(1)})
    with pytest.raises(CaptureError) as err:
        lyncpcap.analyze(path)
    text = str(err.value)
    assert text.startswith(f"{path}: password-protected SAZ") and "without a password" in text
    assert "\n" not in text and "ZipInfo" not in text


# -- HAR --------------------------------------------------------------------------------------------


def _har(path: Path, entries: list[dict[str, Any]], **log: Any) -> Path:
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "Firefox", "version": "123.0"}, **log,
                                        "entries": entries}}, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def _firefox_entry(url: str, started: str, server: str, *, status: int = 200, text: str = "", mime: str = "application/json",
                   method: str = "GET", post: dict[str, Any] | None = None) -> dict[str, Any]:
    """An entry as Firefox's HAR builder writes it: `connection` is the server's port."""
    host = url.split("/")[2]
    req: dict[str, Any] = {"bodySize": 0, "method": method, "url": url, "httpVersion": "HTTP/2",
                           "headers": [{"name": "Host", "value": host},
                                       {"name": "User-Agent", "value": "Mozilla/5.0 (Windows NT 10.0; rv:123.0) Gecko/20100101 Firefox/123.0"}],
                           "cookies": [], "queryString": [], "headersSize": 400}
    if post is not None:
        req["postData"] = post
    return {
        "pageref": "page_1", "startedDateTime": started, "request": req,
        "response": {"status": status, "statusText": "OK" if status == 200 else "", "httpVersion": "HTTP/2",
                     "headers": [{"name": "content-type", "value": mime}], "cookies": [],
                     "content": {"mimeType": mime, "size": len(text), "text": text}, "redirectURL": "",
                     "headersSize": 300, "bodySize": len(text)},
        "cache": {}, "timings": {"blocked": 0, "dns": 0, "connect": 0, "ssl": 0, "send": 0, "wait": 40, "receive": 1},
        "time": 41, "_securityState": "secure", "serverIPAddress": server, "connection": "443",
    }


def test_firefox_har_connection_is_the_server_port_not_a_connection(tmp_path: Path) -> None:
    """Firefox writes the server's port as `connection`: two servers on 443 are two connections."""
    path = _har(tmp_path / "firefox.har", [
        _firefox_entry("https://lyncdiscover.contoso.com/?sipuri=alice@contoso.com", "2024-03-01T09:00:00.100+01:00",
                       "203.0.113.10", text=ROOT_JSON.decode()),
        _firefox_entry("https://lyncweb.contoso.com/Autodiscover/AutodiscoverService.svc/root?originalDomain=contoso.com",
                       "2024-03-01T09:00:00.300+01:00", "203.0.113.20", text=ROOT_JSON.decode()),
    ])
    a = lyncpcap.analyze(path)
    assert [(s.frame, s.dst) for s in a.step_list] == [(1, "203.0.113.10"), (2, "203.0.113.20")]


def _lwa_har() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / "05-lwa-domain-user-soap-har.har").read_text(encoding="utf-8"))
    return doc


def test_har_text_body_in_utf16_is_read_in_utf16(tmp_path: Path) -> None:
    """Developer tools store a body as text, decoded: a SOAP fault the server sent in UTF-16 (its
    XML declaration says so) must be read in UTF-16 again to be understood."""
    doc = _lwa_har()
    entries = doc["log"]["entries"]
    [entry] = [e for e in entries if e["request"]["url"].endswith("/WebTicketService.svc/Auth")]
    del entries[entries.index(entry) + 1 :]  # no UCWA without a web ticket
    fault = lync.soap_fault(28020, "No valid security token.").decode()
    envelope = ('<?xml version="1.0" encoding="utf-16"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
                f"<s:Body>{fault}</s:Body></s:Envelope>")
    entry["response"].update(status=500, statusText="Internal Server Error")
    entry["response"]["content"] = {"size": len(envelope) * 2, "mimeType": "text/xml; charset=utf-16", "text": envelope}
    path = tmp_path / "utf16.har"
    path.write_text(json.dumps(doc), encoding="utf-8")
    a = lyncpcap.analyze(path)
    [session] = a.session_list
    assert session.outcome == "failure" and session.failure is not None and session.failure["step"] == "webticket"
    assert "28020" in session.failure["evidence"] or "28020" in session.failure["reason"]


def test_har_fragment_is_not_sent_nor_shown(tmp_path: Path) -> None:
    """A URL's fragment never reaches the server, and after an OAuth implicit grant it holds the token."""
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
    doc = _lwa_har()
    doc["log"]["entries"][0]["request"]["url"] += f"#access_token={token}&token_type=Bearer"
    path = tmp_path / "fragment.har"
    path.write_text(json.dumps(doc), encoding="utf-8")
    a = lyncpcap.analyze(path)
    first = next(s for s in a.step_list if s.frame == 1)
    assert first.url == "https://meet.contoso.com/meet/gina/AB12CD34"
    assert token not in json.dumps(a.to_json())


def test_chrome_har_cached_entries_were_never_sent(tmp_path: Path) -> None:
    doc = _lwa_har()
    cached = copy.deepcopy(doc["log"]["entries"][0])
    cached.update(_fromCache="memory", serverIPAddress="", time=0.3, startedDateTime="2014-02-20T10:00:09.000Z")
    doc["log"]["entries"].append(cached)
    path = tmp_path / "cached.har"
    path.write_text(json.dumps(doc), encoding="utf-8")
    a = lyncpcap.analyze(path)
    entries = len(doc["log"]["entries"])
    assert entries not in {s.frame for s in a.step_list}
    assert sorted(s.frame for s in a.step_list) == list(range(1, entries))
    assert a.captures[0].warnings == ["1 HAR entries skipped: served from the browser's cache, never sent to the server"]


def test_har_cut_short_gives_the_entries_before_the_cut(tmp_path: Path) -> None:
    """A HAR cut in the middle of an entry (a full disk, an attachment limit): the entries before are read."""
    text = (SAMPLES / "05-lwa-domain-user-soap-har.har").read_text(encoding="utf-8")
    cut = text.index('"https://lyncweb.contoso.com/WebTicket/WebTicketService.svc/Auth"')
    path = tmp_path / "cut.har"
    path.write_text(text[:cut], encoding="utf-8")
    a = lyncpcap.analyze(path)
    assert sorted(s.frame for s in a.step_list) == [1, 2, 3, 4]
    [warning] = a.captures[0].warnings
    assert warning.startswith("the HAR file is damaged or cut short after entry 4 (invalid JSON at line")


def test_har_compressed_body_exported_as_base64_is_decoded(tmp_path: Path) -> None:
    entry = _firefox_entry("https://lyncdiscover.contoso.com/?sipuri=alice@contoso.com", "2024-03-01T08:00:00Z", "203.0.113.10")
    entry["response"]["headers"].append({"name": "Content-Encoding", "value": "gzip"})
    entry["response"]["content"] = {"mimeType": "application/json", "size": len(ROOT_JSON), "encoding": "base64",
                                    "text": base64.b64encode(gzip.compress(ROOT_JSON)).decode()}
    [step] = lyncpcap.analyze(_har(tmp_path / "gzip-body.har", [entry])).step_list
    assert (step.step, step.detail) == ("autodiscover", "root: self, user")


def test_har_habits_already_read_right(tmp_path: Path) -> None:
    """Entries out of time order, no `pages`, a UTF-8 byte-order mark, time zones as offsets or Z
    with or without fractions, h3, a form posted as `params` only: the same analysis."""
    base = lyncpcap.analyze(SAMPLES / "05-lwa-domain-user-soap-har.har")
    doc = _lwa_har()
    entries = doc["log"]["entries"]
    del doc["log"]["pages"]
    for n, e in enumerate(entries):
        e["request"]["httpVersion"] = "h3"
        if n % 2:  # the same instant written with an offset
            stamp = e["startedDateTime"]
            hour = int(stamp[11:13]) + 1
            e["startedDateTime"] = f"{stamp[:11]}{hour:02d}{stamp[13:-1]}+01:00"
    entries.reverse()
    path = tmp_path / "reordered.har"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())
    a = lyncpcap.analyze(path)
    count = len(entries)
    assert [(s.step, s.auth, s.status, count + 1 - s.frame) for s in a.step_list] == [
        (s.step, s.auth, s.status, s.frame) for s in base.step_list]
    assert [(x.outcome, x.user) for x in a.session_list] == [(x.outcome, x.user) for x in base.session_list]
    form = _firefox_entry("https://lyncweb.contoso.com/WebTicket/oauthtoken", "2024-03-01T08:00:00Z", "203.0.113.20",
                          method="POST", text='{"access_token":"cwt=AAEB","token_type":"Bearer","expires_in":28799}',
                          post={"mimeType": "application/x-www-form-urlencoded",
                                "params": [{"name": "grant_type", "value": "password"},
                                           {"name": "username", "value": "alice@contoso.com"},
                                           {"name": "password", "value": "Secret-1"}]})
    [step] = lyncpcap.analyze(_har(tmp_path / "params.har", [form])).step_list
    assert (step.step, step.auth, step.status) == ("oauth", "password", 200)


def test_large_har_is_read_an_entry_at_a_time(tmp_path: Path) -> None:
    """A HAR of a long browser session is mostly images; it is read in pieces, so memory follows its
    largest entry, not the file (parsed whole, a HAR took 3 to 6 times its size)."""
    doc = _lwa_har()
    image = copy.deepcopy(doc["log"]["entries"][0])
    image["request"]["url"] = "https://lyncweb.contoso.com/lwa/images/avatar.png"
    image["response"]["content"] = {"size": 450_000, "mimeType": "image/png", "encoding": "base64",
                                    "text": base64.b64encode(bytes(range(256)) * 1758).decode()}
    doc["log"]["pages"][0]["title"] = "Lync Web App — Gina 😀"  # one character outside the BMP
    doc["log"]["entries"] = [image] * 100 + doc["log"]["entries"]
    path = tmp_path / "large.har"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    size = path.stat().st_size
    assert size > 50_000_000
    tracemalloc.start()
    try:
        archive = har.read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(archive.exchanges) == 106 and archive.entries == 106
    assert peak < size / 4, (peak, size)
    a = lyncpcap.analyze(path)
    assert [(x.outcome, x.user) for x in a.session_list] == [("success", "CONTOSO\\gina")]


def test_saz_reader_sees_the_archive_twins_unchanged() -> None:
    """The SAZ reader's own framing gives the samples' exchanges as before (same bodies and times)."""
    for path in sorted(SAMPLES.glob("*.saz")):
        archive = saz.read(path)
        assert archive.warnings == []
        for x in archive.exchanges:
            resp = x.exchange.response
            assert resp is not None and not resp.truncated
            assert resp.body_size == len(resp.body) or resp.headers.get("Content-Encoding")


@pytest.mark.parametrize("compressed", [False, True])
def test_a_har_saved_as_utf16_is_read(compressed: bool, tmp_path: Path) -> None:
    """PowerShell's Out-File and Notepad's "Unicode" save text as UTF-16 with a byte-order mark: the
    same HAR, plain or gzip'd, gives the same steps."""
    sample = SAMPLES / "05-lwa-domain-user-soap-har.har"
    data = sample.read_text(encoding="utf-8-sig").encode("utf-16")
    path = tmp_path / ("u16.har.gz" if compressed else "u16.har")
    path.write_bytes(gzip.compress(data) if compressed else data)
    a, b = lyncpcap.analyze(path), lyncpcap.analyze(sample)
    assert [(s.step, s.url, s.status, s.result) for s in a.step_list] == [
        (s.step, s.url, s.status, s.result) for s in b.step_list
    ]
    assert a.step_list and a.captures[0].format == "har"


def _unanswered(url: str, started: str, error: str) -> dict[str, Any]:
    """A Chrome HAR entry the browser gave up on: status 0, the net error in `_error`."""
    return {
        "startedDateTime": started, "time": 31.2, "connection": "",
        "request": {"method": "GET", "url": url, "httpVersion": "", "headers": [
            {"name": "User-Agent", "value": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"}]},
        "response": {"status": 0, "statusText": "", "httpVersion": "", "headers": [], "_error": error,
                     "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "", "_transferSize": 0},
        "timings": {"blocked": 31.2, "dns": -1, "connect": -1, "send": 0, "wait": 0, "receive": 0},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("net::ERR_NAME_NOT_RESOLVED", "lyncdiscover.contoso.com does not resolve (DNS)"),
        ("net::ERR_CONNECTION_REFUSED", "could not connect to lyncdiscover.contoso.com: connection refused"),
        ("net::ERR_CERT_AUTHORITY_INVALID", "the browser does not trust the certificate of lyncdiscover.contoso.com"),
    ],
)
def test_chrome_har_a_request_the_browser_gave_up_on_is_the_failure_with_its_reason(
    error: str, reason: str, tmp_path: Path
) -> None:
    """Status 0 with `_error`: the request never got an answer, and Chrome says why.  The session
    fails at that step with the browser's reason, not "no response seen"."""
    entries = [_unanswered("https://lyncdiscover.contoso.com/?sipuri=kim@contoso.com", "2024-03-01T08:15:02.100Z", error)]
    path = tmp_path / "gave-up.har"
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}), encoding="utf-8")
    (session,) = lyncpcap.analyze(path).session_list
    (step,) = session.steps
    assert (step.step, step.result, step.status) == ("autodiscover", "failure", error.removeprefix("net::"))
    assert session.outcome == "failure" and session.failure is not None
    assert session.failure["reason"].startswith(reason) and error in session.failure["evidence"]


def test_chrome_har_a_request_the_page_cancelled_is_no_failure(tmp_path: Path) -> None:
    entries = [_unanswered("https://lyncdiscover.contoso.com/?sipuri=kim@contoso.com", "2024-03-01T08:15:02.100Z",
                           "net::ERR_ABORTED")]  # fmt: skip
    path = tmp_path / "aborted.har"
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}), encoding="utf-8")
    (step,) = lyncpcap.analyze(path).step_list
    assert step.result == "none" and "cancelled by the browser (net::ERR_ABORTED)" in step.detail
