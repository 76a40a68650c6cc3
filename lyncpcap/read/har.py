"""HTTP Archive (HAR 1.2, as browsers' developer tools and Fiddler export it): `log.entries[]` with
`request`, `response`, `startedDateTime`, `timings`, `serverIPAddress` and `connection`.

Each entry becomes the same `HttpExchange` the packet path produces.  HAR bodies are already
decoded (`content.text`, base64 when `content.encoding` says so), HTTP/2 pseudo-headers are read as
the request line and Host.  Times: the request starts at `startedDateTime` and is sent after the
blocked, dns, connect and send timings; the response starts after `wait` and ends at
`startedDateTime + time`.  Conventions (frame = entry position, client = `har:<file name>`) are in
`read/archive.py`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lyncpcap.errors import CaptureError
from lyncpcap.protocols.http import Headers, HttpExchange, HttpRequest, HttpResponse
from lyncpcap.read.archive import Archive, ArchiveExchange, plain_address, split_url
from lyncpcap.read.layers import EARLIEST_TIME, LATEST_TIME

__all__ = ["read"]

#: A HAR larger than this is not read (it is held in memory as JSON).
MAX_HAR = 2 << 30


class _Bad(ValueError):
    """An entry that does not follow HAR 1.2; the message says which field."""


def _load(p: Path) -> Any:
    try:
        size = p.stat().st_size
        if size > MAX_HAR:
            raise CaptureError(p, f"HAR file of {size} bytes is too large to read")
        raw = p.read_bytes()
    except OSError as exc:
        raise CaptureError(p, f"cannot read: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(p, f"damaged gzip'd HAR ({exc})") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise CaptureError(p, f"not a HAR file: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CaptureError(p, f"not a HAR file: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None


def _time(text: Any) -> float:
    if not isinstance(text, str) or not text:
        raise _Bad("startedDateTime is missing")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"startedDateTime {text!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise _Bad(f"startedDateTime {text!r} has no time zone")
    ts = when.timestamp()
    if not EARLIEST_TIME <= ts < LATEST_TIME:
        raise _Bad(f"startedDateTime {text!r} is before 1970 or after 2106")
    return ts


#: Longest time (ms) an entry's timing may give: longer ones (or Infinity, which JSON readers
#: accept) are damage, read as absent like HAR's own -1.
MAX_TIMING_MS = 86_400_000.0


def _seconds(value: Any) -> float:
    """A HAR duration in ms as seconds; 0 for absent (-1), non-numeric or implausible ones."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < MAX_TIMING_MS:
        return float(value) / 1000.0
    return 0.0


def _ms(timings: dict[str, Any], name: str) -> float:
    return _seconds(timings.get(name))


def _headers(items: Any, where: str) -> list[tuple[str, str]]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise _Bad(f"{where}.headers is not a list")
    out = []
    for h in items:
        if not isinstance(h, dict) or not isinstance(h.get("name"), str):
            raise _Bad(f"{where}.headers holds an entry without a name")
        out.append((h["name"], str(h.get("value", ""))))
    return out


def _version(text: Any) -> str:
    v = str(text or "HTTP/1.1").strip()
    if v.lower() in ("h2", "http/2", "http/2.0"):
        return "HTTP/2"
    if v.lower() in ("h3", "http/3", "http/3.0"):
        return "HTTP/3"
    return v.upper() if v.lower().startswith("http/") else "HTTP/1.1"


def _request_body(req: dict[str, Any]) -> bytes:
    post = req.get("postData")
    if not isinstance(post, dict):
        return b""
    text = post.get("text")
    if isinstance(text, str):
        return text.encode("utf-8")
    params = post.get("params")
    if isinstance(params, list):
        pairs = [(str(x.get("name", "")), str(x.get("value", ""))) for x in params if isinstance(x, dict)]
        return urlencode(pairs).encode("ascii")
    return b""


def _response_body(content: Any) -> bytes:
    if not isinstance(content, dict):
        return b""
    text = content.get("text")
    if not isinstance(text, str):
        return b""
    if str(content.get("encoding", "")).lower() == "base64":
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise _Bad("response.content.text is not valid base64") from None
    return text.encode("utf-8")


def _entry(number: int, entry: Any, client: str) -> ArchiveExchange | None:
    if not isinstance(entry, dict):
        raise _Bad("is not an object")
    req = entry.get("request")
    if not isinstance(req, dict):
        raise _Bad("has no request")
    method, url = req.get("method"), req.get("url")
    if not isinstance(method, str) or not isinstance(url, str):
        raise _Bad("request has no method or url")
    if method.upper() == "CONNECT":
        return None
    scheme, host, port, target = split_url(url)
    if scheme not in ("http", "https"):
        return None  # ws:, data:, chrome-extension: …
    items = _headers(req.get("headers"), "request")
    authority = next((v for k, v in items if k.lower() == ":authority"), None)
    items = [(k, v) for k, v in items if not k.startswith(":")]
    if not any(k.lower() == "host" for k, _ in items):
        items.append(("Host", authority or (host if port is None else f"{host}:{port}")))
    started = _time(entry.get("startedDateTime"))
    raw_timings = entry.get("timings")
    timings: dict[str, Any] = raw_timings if isinstance(raw_timings, dict) else {}
    sent = started + sum(_ms(timings, k) for k in ("blocked", "dns", "connect", "send"))
    total = _seconds(entry.get("time"))
    end = started + total if total else sent + _ms(timings, "wait") + _ms(timings, "receive")
    body = _request_body(req)
    request = HttpRequest(
        method=method.upper(),
        target=target,
        version=_version(req.get("httpVersion")),
        headers=Headers(items),
        body=body,
        body_size=len(body),
        first_frame=number,
        frame=number,
        first_ts=started,
        ts=sent,
    )
    response: HttpResponse | None = None
    resp = entry.get("response")
    if isinstance(resp, dict) and isinstance(resp.get("status"), int) and resp["status"] > 0:
        rbody = _response_body(resp.get("content"))
        rheaders = [(k, v) for k, v in _headers(resp.get("headers"), "response") if not k.startswith(":")]
        response = HttpResponse(
            status=resp["status"],
            reason=str(resp.get("statusText") or ""),
            version=_version(resp.get("httpVersion")),
            headers=Headers(rheaders),
            body=rbody,
            body_size=len(rbody),
            first_frame=number,
            frame=number,
            first_ts=min(max(sent + _ms(timings, "wait"), sent), max(end, sent)),
            ts=max(end, sent),
        )
    server = plain_address(entry.get("serverIPAddress")) or host
    server_port = port if port is not None else (443 if scheme == "https" else 80)
    conn_id = entry.get("connection")
    connection = f"{client}|{conn_id}" if conn_id not in (None, "") else f"{client}|{scheme}://{host}:{server_port}"
    exchange = HttpExchange(request=request, response=response, index=0)
    return ArchiveExchange(number, exchange, client, server, scheme, None, server_port, connection)


def read(path: str | Path) -> Archive:
    """Read a HAR (plain or gzip'd JSON); `CaptureError` with a one-line reason when it is not one."""
    p = Path(path)
    data = _load(p)
    log = data.get("log") if isinstance(data, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise CaptureError(p, "not a HAR file: no log.entries list")
    entries = log["entries"]
    archive = Archive("har", entries=len(entries))
    client = f"har:{p.name}"
    skipped = 0
    for number, entry in enumerate(entries, 1):
        try:
            ax = _entry(number, entry, client)
        except _Bad as exc:
            raise CaptureError(p, f"HAR entry {number} {exc}") from None
        if ax is None:
            skipped += 1
            continue
        archive.exchanges.append(ax)
    if skipped:
        archive.warnings.append(f"{skipped} HAR entries skipped (CONNECT or not http/https)")
    return archive
