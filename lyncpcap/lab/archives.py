"""The lab's web exchanges as the archives support engineers are sent: a Fiddler SAZ (Fiddler as the
client's HTTPS-decrypting proxy) and a browser HAR (one per browser, as developer tools save it).

Both are written from `Capture.web`, the exchanges a scenario run sent, so they hold exactly its
web traffic; DNS, Kerberos and SIP cannot be in them.  The layouts follow what Fiddler 4 and
Chrome write (session files and `_index.htm`; HAR 1.2 with Chrome's `_resourceType`), and the
output is deterministic: zip member times come from the lab clock.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from lyncpcap.lab.world import Capture, WebExchange

__all__ = ["har_document", "write_archive", "write_har", "write_saz"]

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="utf-8" ?>\r\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\r\n'
    '<Default Extension="htm" ContentType="text/html" />\r\n'
    '<Default Extension="xml" ContentType="application/xml" />\r\n'
    '<Default Extension="txt" ContentType="text/plain" />\r\n'
    "</Types>"
)


# -- the bytes of an exchange ---------------------------------------------------------------------


def _split(message: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers, body


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out)
        out += body[pos : pos + size]
        pos += size + 2


def _content(headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The body as a browser shows it: transfer and content codings undone."""
    if "chunked" in (_header(headers, "Transfer-Encoding") or "").lower():
        body = _dechunk(body)
    if (_header(headers, "Content-Encoding") or "").lower() in ("gzip", "x-gzip"):
        body = gzip.decompress(body)
    return body


def _url(ex: WebExchange, target: str) -> str:
    # the plaintext twins run HTTP on 80/8080 as the decrypted view; an archive shows the HTTPS
    # URL the client really used
    host = _header(_split(ex.request)[1], "Host") or ex.server
    return f"https://{host}{target}"


# -- Fiddler SAZ ----------------------------------------------------------------------------------


def _net_time(t: float) -> str:
    """A .NET round-trip timestamp, as Fiddler writes its timers (UTC here)."""
    when = datetime.fromtimestamp(t, UTC)
    ticks = round((t - int(t)) * 10_000_000) % 10_000_000
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks:07d}+00:00"


def _fiddler_client_ip(address: str) -> str:
    # Fiddler listens dual-stack, so IPv4 clients show as IPv4-mapped IPv6 addresses
    return address if ":" in address else f"::ffff:{address}"


def _saz_request(ex: WebExchange) -> bytes:
    """Fiddler stores a proxied request with its absolute URL in the request line."""
    head, sep, rest = ex.request.partition(b"\r\n")
    method, target, version = head.decode("utf-8").split(" ", 2)
    return f"{method} {_url(ex, target)} {version}".encode() + sep + rest


def _meta_xml(number: int, ex: WebExchange) -> str:
    connect = ex.begin if ex.new_connection else ex.begin - 0.000_1
    timers = {
        "ClientConnected": connect,
        "ClientBeginRequest": ex.begin,
        "GotRequestHeaders": ex.begin,
        "ClientDoneRequest": ex.sent,
        "ServerConnected": connect,
        "FiddlerBeginRequest": ex.sent,
        "ServerGotRequest": ex.sent,
        "ServerBeginResponse": ex.answered,
        "GotResponseHeaders": ex.answered,
        "ServerDoneResponse": ex.done,
        "ClientBeginResponse": ex.answered,
        "ClientDoneResponse": ex.done,
    }
    attrs = " ".join(f'{k}="{_net_time(v)}"' for k, v in timers.items())
    rbody = _split(ex.response)[2]
    flags = [
        ("x-responsebodytransferlength", str(len(rbody))),
        ("x-egressport", str(ex.client_port)),
        ("x-hostip", ex.server),
        ("x-clientport", str(ex.client_port)),
        ("x-clientip", _fiddler_client_ip(ex.client)),
    ]
    flag_xml = "".join(f'<SessionFlag N="{html.escape(n)}" V="{html.escape(v)}" />' for n, v in flags)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n'
        f'<Session SID="{number}" BitFlags="{"1" if ex.new_connection else "0"}">'
        f'<SessionTimers {attrs} GatewayTime="0" DNSTime="0" TCPConnectTime="0" HTTPSHandshakeTime="0" />'
        f'<PipeInfo CltReuse="{"false" if ex.new_connection else "true"}" Reused="{"false" if ex.new_connection else "true"}" />'
        f"<SessionFlags>{flag_xml}</SessionFlags></Session>"
    )


def _index_htm(rows: list[tuple[str, int, WebExchange]]) -> str:
    out = [
        "<html><head><style>body,thead,td,a,p{font-family:verdana,sans-serif;font-size: 10px;}</style>"
        "</head><body><table cols=12><thead><tr><th>&nbsp;</th><th>#</th><th>Result</th><th>Protocol</th>"
        "<th>Host</th><th>URL</th><th>Body</th><th>Caching</th><th>Content-Type</th><th>Process</th>"
        "<th>Comments</th><th>Custom</th></tr></thead><tbody>"
    ]
    for stem, number, ex in rows:
        status = _split(ex.response)[0].split(" ")[1]
        start, headers, _ = _split(ex.request)
        target = start.split(" ")[1]
        _, rheaders, rbody = _split(ex.response)
        links = f"<a href='raw\\{stem}_c.txt'>C</a>&nbsp;<a href='raw\\{stem}_s.txt'>S</a>&nbsp;<a href='raw\\{stem}_m.xml'>M</a>"
        cells = [links, str(number), status, "HTTPS", _header(headers, "Host") or "", target, str(len(rbody)),
                 _header(rheaders, "Cache-Control") or "", _header(rheaders, "Content-Type") or "", "", "", ""]
        out.append("<tr>" + "".join(f"<td>{html.escape(c) if i else c}</td>" for i, c in enumerate(cells)) + "</tr>")
    out.append("</tbody></table></body></html>")
    return "".join(out)


def write_saz(path: Path, exchanges: list[WebExchange]) -> None:
    """A Fiddler session archive of `exchanges`, numbered from 1 in time order."""
    ordered = sorted(exchanges, key=lambda e: e.begin)
    width = max(2, len(str(len(ordered))))
    rows: list[tuple[str, int, WebExchange]] = []
    stamp = datetime.fromtimestamp(ordered[0].begin, UTC).timetuple()[:6] if ordered else (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:

        def put(name: str, data: bytes | str) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)

        put("[Content_Types].xml", CONTENT_TYPES)
        for number, ex in enumerate(ordered, 1):
            stem = str(number).zfill(width)
            rows.append((stem, number, ex))
            put(f"raw/{stem}_c.txt", _saz_request(ex))
            put(f"raw/{stem}_s.txt", ex.response)
            put(f"raw/{stem}_m.xml", _meta_xml(number, ex))
        put("_index.htm", _index_htm(rows))


# -- HAR ------------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    when = datetime.fromtimestamp(t, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}Z"


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000.0, 3)


def _har_entry(ex: WebExchange, page: str) -> dict[str, Any]:
    start, headers, body = _split(ex.request)
    method, target, version = start.split(" ", 2)
    status_line, rheaders, rbody = _split(ex.response)
    rversion, status, *reason = status_line.split(" ", 2)
    content = _content(rheaders, rbody)
    mime = _header(rheaders, "Content-Type") or "x-unknown"
    text: dict[str, Any] = {}
    if content:
        try:
            text = {"text": content.decode("utf-8")}
        except UnicodeDecodeError:
            text = {"text": base64.b64encode(content).decode("ascii"), "encoding": "base64"}
    request: dict[str, Any] = {
        "method": method,
        "url": _url(ex, target),
        "httpVersion": version,
        "headers": [{"name": k, "value": v} for k, v in headers],
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(target.partition("?")[2], keep_blank_values=True)],
        "cookies": [],
        "headersSize": len(ex.request) - len(body),
        "bodySize": len(body),
    }
    if body:
        request["postData"] = {"mimeType": _header(headers, "Content-Type") or "", "text": body.decode("utf-8")}
    timings = {  # the connection was set up before the request began: no dns/connect/ssl time
        "blocked": 0.0,
        "dns": -1,
        "ssl": -1,
        "connect": -1,
        "send": _ms(ex.sent - ex.begin),
        "wait": _ms(ex.answered - ex.sent),
        "receive": _ms(ex.done - ex.answered),
    }
    server = f"[{ex.server}]" if ":" in ex.server else ex.server
    location = _header(rheaders, "Location") or ""
    return {
        "_resourceType": "xhr" if _header(headers, "X-Requested-With") or "json" in mime else "document",
        "cache": {},
        "connection": str(ex.client_port),
        "pageref": page,
        "request": request,
        "response": {
            "status": int(status),
            "statusText": reason[0] if reason else "",
            "httpVersion": rversion,
            "headers": [{"name": k, "value": v} for k, v in rheaders],
            "cookies": [],
            "content": {"size": len(content), "mimeType": mime, **text},
            "redirectURL": location,
            "headersSize": len(ex.response) - len(rbody),
            "bodySize": len(rbody),
            "_transferSize": len(ex.response),
        },
        "serverIPAddress": server,
        "startedDateTime": _iso(ex.begin),
        "time": _ms(ex.done - ex.begin),
        "timings": timings,
    }


def har_document(exchanges: list[WebExchange], *, creator: str = "lyncpcap lab") -> dict[str, Any]:
    ordered = sorted(exchanges, key=lambda e: e.begin)
    pages = []
    if ordered:
        first = ordered[0]
        pages.append({
            "startedDateTime": _iso(first.begin),
            "id": "page_1",
            "title": _url(first, _split(first.request)[0].split(" ")[1]),
            "pageTimings": {"onContentLoad": -1, "onLoad": -1},
        })
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": creator, "version": "1.0"},
            "pages": pages,
            "entries": [_har_entry(ex, "page_1") for ex in ordered],
        }
    }


def write_har(path: Path, exchanges: list[WebExchange]) -> None:
    path.write_text(json.dumps(har_document(exchanges), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- a scenario as an archive, with its truth ------------------------------------------------------

#: Steps recorded by Client.http carry the request's path; DNS, Kerberos and SIP steps do not.
def _web_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in steps if "path" in s]


def write_archive(
    cap: Capture,
    directory: Path,
    fmt: str,
    *,
    client: str | None = None,
    archive_of: str | None = None,
) -> list[Path]:
    """Write `cap`'s web exchanges as `NAME.saz` or `NAME.har` and its truth file: the sessions
    restricted to their web steps, with the client address the archive conventions give
    (`read/archive.py`).  `client` keeps one client's exchanges (a HAR is one browser)."""
    if fmt not in ("saz", "har"):
        raise ValueError(f"fmt is 'saz' or 'har', not {fmt!r}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{cap.name}.{fmt}"
    exchanges = [e for e in cap.web if client is None or e.client == client]
    if not exchanges:
        raise ValueError(f"{cap.name}: no web exchanges{' of ' + client if client else ''} to archive")
    if fmt == "saz":
        write_saz(path, exchanges)
    else:
        write_har(path, exchanges)
    truth = cap.truth()
    included = {id(e.truth) for e in exchanges}
    sessions = []
    for session in cap.sessions:
        if id(session) not in included:
            continue
        record = session.to_json()
        record["steps"] = _web_steps(record["steps"])
        if fmt == "har":
            record["client"]["address"] = f"har:{path.name}"
        sessions.append(record)
    truth["sessions"] = sessions
    truth["archive_of"] = archive_of
    tpath = directory / f"{cap.name}.truth.json"
    tpath.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")
    return [path, tpath]
