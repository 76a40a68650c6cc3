"""HTTP Archive (HAR 1.2, as browsers' developer tools and Fiddler export it): `log.entries[]` with
`request`, `response`, `startedDateTime`, `timings`, `serverIPAddress` and `connection`.

The file is read an entry at a time (`_Json`), so memory follows the largest entry, not the file;
a file cut short (or damaged) after some entries gives those, with a warning.  Each entry becomes
the same `HttpExchange` the packet path produces.  HAR bodies are already decoded (`content.text`,
base64 when `content.encoding` says so): text is encoded again in the charset its XML declaration
or MIME type names (a UTF-16 SOAP fault stays UTF-16), a base64 body still gzip'd is inflated, and
bodies are kept up to `MAX_BODY_KEEP` as for packets (images and fonts not at all).  HTTP/2
pseudo-headers are read as the request line and Host; a URL's fragment, never sent, is dropped.
Entries Chrome served from its cache (`_fromCache`) were never sent: skipped and counted.  A
connection is one server's: Firefox writes the server's port as `connection`.  Times: the request
starts at `startedDateTime` and is sent after the blocked, dns, connect and send timings; the
response starts after `wait` and ends at `startedDateTime + time`.  Conventions (frame = entry
position, client = `har:<file name>`) are in `read/archive.py`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO, cast
from urllib.parse import urlencode

from lyncpcap.errors import CaptureError
from lyncpcap.protocols.http import (
    MAX_BODY_KEEP,
    Headers,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    decode_body,
)
from lyncpcap.read.archive import Archive, ArchiveExchange, plain_address, split_url
from lyncpcap.read.layers import EARLIEST_TIME, LATEST_TIME

__all__ = ["read"]

#: Characters of the HAR read at a time; an entry larger than what is buffered doubles the read.
CHUNK = 1 << 20


class _Bad(ValueError):
    """An entry that does not follow HAR 1.2; the message says which field."""


class _Invalid(ValueError):
    """Text that is not JSON; the message says where, as `json` does."""


class _Json:
    """One JSON document read from a text stream a piece at a time: a HAR's `log.entries` come one
    entry at a time, so memory follows the largest entry, not the file (a 160 MB HAR parsed whole
    took 0.5 to 1 GB)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line, self.column = 1, 0  # where buf[0] is: line, and characters before it on that line
        self.decoder = json.JSONDecoder()

    def more(self) -> bool:
        """Read more text (at least as much as is buffered); False at the end of the file."""
        if self.eof:
            return False
        if self.pos:
            done = self.buf[: self.pos]
            lines = done.count("\n")
            self.line += lines
            self.column = len(done) - done.rfind("\n") - 1 if lines else self.column + len(done)
            self.buf, self.pos = self.buf[self.pos :], 0
        data = self.stream.read(max(CHUNK, len(self.buf)))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def invalid(self, message: str, at: int | None = None) -> _Invalid:
        at = self.pos if at is None else at
        lines = self.buf.count("\n", 0, at)
        column = at - self.buf.rfind("\n", 0, at) if lines else self.column + at + 1
        return _Invalid(f"invalid JSON at line {self.line + lines} column {column} ({message})")

    def peek(self) -> str:
        """The next character after white space, "" at the end."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self.more():
                return ""

    def take(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise self.invalid(what)
        self.pos += 1
        return c

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                where = exc.pos - self.pos  # more() moves the buffer
                if self.more():
                    continue
                raise self.invalid(exc.msg, self.pos + where) from None
            if end >= len(self.buf) and self.more():
                continue  # a number or literal may go on in the text not read yet
            self.pos = end
            return obj

    def members(self) -> Iterator[str]:
        """The keys of the object that starts here; the caller reads each value."""
        self.take("{", "Expecting an object")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self.invalid("Expecting property name enclosed in double quotes")
            key = self.value()
            self.take(":", "Expecting ':' delimiter")
            yield key
            if self.take(",}", "Expecting ',' delimiter") == "}":
                return

    def items(self) -> Iterator[Any]:
        """The values of the array that starts here, one at a time."""
        self.take("[", "Expecting an array")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.take(",]", "Expecting ',' delimiter") == "]":
                return


@contextmanager
def _text(p: Path) -> Iterator[TextIO]:
    """The HAR's text, gzip'd or not: UTF-8 (a byte-order mark dropped), or UTF-16 after its
    byte-order mark (what PowerShell's Out-File and Notepad's "Unicode" write)."""
    try:
        with open(p, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise CaptureError(p, f"cannot read: {exc.strerror or exc}") from None
    binary = cast(IO[bytes], gzip.GzipFile(p, "rb")) if gzipped else open(p, "rb")  # noqa: SIM115 (closed below)
    with binary:
        try:
            bom = binary.peek(2)[:2] if hasattr(binary, "peek") else b""
        except (OSError, EOFError, zlib.error):
            bom = b""
        encoding = "utf-16" if bom in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        with io.TextIOWrapper(binary, encoding=encoding, errors="replace") as text:
            yield text


def _entries(p: Path, stream: TextIO, notes: list[str]) -> Iterator[Any]:
    """`log.entries` one by one, wherever `log` and `entries` come among their siblings.  A file cut
    (or damaged) after some entries gives those, with a note; before any, a CaptureError."""
    reader = _Json(stream)
    found = 0
    seen_entries = False
    try:
        first = reader.peek()
        if not first:
            raise reader.invalid("Expecting value")
        if first != "{":
            reader.value()  # JSON, but not an object: not a HAR
        for key in reader.members() if first == "{" else ():
            if key != "log" or reader.peek() != "{":
                reader.value()
                continue
            for name in reader.members():
                if name != "entries" or reader.peek() != "[":
                    reader.value()
                    continue
                seen_entries = True
                for entry in reader.items():
                    found += 1
                    yield entry
        if reader.peek():
            raise reader.invalid("Extra data")
    except _Invalid as exc:
        if not found:
            raise CaptureError(p, f"not a HAR file: {exc}") from None
        notes.append(f"the HAR file is damaged or cut short after entry {found} ({exc}): the entries before it are read")
    except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream
        if not found:
            raise CaptureError(p, f"damaged gzip'd HAR ({exc})") from None
        notes.append(f"the gzip'd HAR is damaged after entry {found} ({exc}): the entries before it are read")
    if not seen_entries:
        raise CaptureError(p, "not a HAR file: no log.entries list")


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


_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)
_XML_ENCODING = re.compile(r"^\ufeff?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([\w.:-]+)[\"']")


def _encode(text: str, mime: Any) -> bytes:
    """A text body in the bytes the server (or client) sent: the tools decoded it to text, and a
    SOAP body in UTF-16 (or Latin-1) that says so in its XML declaration must be read in it again.
    The charset comes from the declaration, else from the MIME type; UTF-8 otherwise."""
    m = _XML_ENCODING.match(text[:200]) or _CHARSET.search(mime if isinstance(mime, str) else "")
    if m:
        try:
            name = codecs.lookup(m.group(1)).name
        except LookupError:
            name = "utf-8"
        if name != "utf-8":
            try:
                if name.startswith("utf-16"):
                    return text.lstrip("\ufeff").encode("utf-16")  # with its byte-order mark
                return text.encode(name)
            except (UnicodeError, LookupError):
                pass
    return text.encode("utf-8")


def _request_body(req: dict[str, Any]) -> bytes:
    post = req.get("postData")
    if not isinstance(post, dict):
        return b""
    text = post.get("text")
    if isinstance(text, str) and text:
        return _encode(text, post.get("mimeType"))
    params = post.get("params")
    if isinstance(params, list) and params:
        pairs = [(str(x.get("name", "")), str(x.get("value", ""))) for x in params if isinstance(x, dict)]
        return urlencode(pairs).encode("ascii")
    return b""


#: Bodies no sign-in step reads; not kept (a browser's HAR holds every image and font of the pages).
_MEDIA = ("image/", "font/", "audio/", "video/")


def _response_body(content: Any, headers: Headers) -> tuple[bytes, int]:
    """The body as kept (the first `MAX_BODY_KEEP` bytes, as for packets) and its size."""
    if not isinstance(content, dict):
        return b"", 0
    text = content.get("text")
    if not isinstance(text, str) or not text:
        return b"", 0
    mime = content.get("mimeType")
    if str(content.get("encoding", "")).lower() == "base64":
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise _Bad("response.content.text is not valid base64") from None
        if data[:2] == b"\x1f\x8b" or (headers.get("Content-Encoding") or "").lower() == "deflate":
            data = decode_body(data, headers)  # still compressed, as some tools export it
    else:
        data = _encode(text, mime)
    if isinstance(mime, str) and mime.lower().startswith(_MEDIA):
        return b"", len(data)
    return data[:MAX_BODY_KEEP], len(data)


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
    url = url.partition("#")[0]  # a fragment never goes to the server (and can hold a token)
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
        rheaders = Headers([(k, v) for k, v in _headers(resp.get("headers"), "response") if not k.startswith(":")])
        rbody, rsize = _response_body(resp.get("content"), rheaders)
        response = HttpResponse(
            status=resp["status"],
            reason=str(resp.get("statusText") or ""),
            version=_version(resp.get("httpVersion")),
            headers=rheaders,
            body=rbody,
            body_size=rsize,
            first_frame=number,
            frame=number,
            first_ts=min(max(sent + _ms(timings, "wait"), sent), max(end, sent)),
            ts=max(end, sent),
        )
    server = plain_address(entry.get("serverIPAddress")) or host
    server_port = port if port is not None else (443 if scheme == "https" else 80)
    # Chrome's `connection` is its socket's id; Firefox writes the server's port there, the same for
    # every server: a connection is never shared between two servers, whatever the id says
    conn_id = entry.get("connection")
    connection = f"{client}|{scheme}://{host}:{server_port}"
    if conn_id not in (None, ""):
        connection += f"|{conn_id}"
    exchange = HttpExchange(request=request, response=response, index=0)
    if response is None and isinstance(resp, dict) and isinstance(resp.get("_error"), str) and resp["_error"]:
        exchange.error = resp["_error"][:200]  # Chrome and Edge: net::ERR_NAME_NOT_RESOLVED, ...
    return ArchiveExchange(number, exchange, client, server, scheme, None, server_port, connection)


def read(path: str | Path) -> Archive:
    """Read a HAR (plain or gzip'd JSON); `CaptureError` with a one-line reason when it is not one."""
    p = Path(path)
    archive = Archive("har")
    client = f"har:{p.name}"
    skipped = cached = 0
    damaged: list[str] = []  # entries that break HAR 1.2: skipped, the first one named
    notes: list[str] = []
    with _text(p) as stream:
        for number, entry in enumerate(_entries(p, stream, notes), 1):
            archive.entries = number
            if isinstance(entry, dict) and entry.get("_fromCache"):
                cached += 1  # Chrome: served from the memory or disk cache, never sent
                continue
            try:
                ax = _entry(number, entry, client)
            except _Bad as exc:
                damaged.append(f"HAR entry {number} {exc}")
                continue
            if ax is None:
                skipped += 1
                continue
            archive.exchanges.append(ax)
    archive.warnings.extend(notes)
    if damaged and not archive.exchanges:
        raise CaptureError(p, damaged[0] + (f" (and {len(damaged) - 1} more entries)" if len(damaged) > 1 else ""))
    if damaged:
        n = len(damaged)
        archive.warnings.append(f"{n} damaged HAR {'entry' if n == 1 else 'entries'} skipped (first: {damaged[0]})")
    if skipped:
        archive.warnings.append(f"{skipped} HAR entries skipped (CONNECT or not http/https)")
    if cached:
        archive.warnings.append(f"{cached} HAR entries skipped: served from the browser's cache, never sent to the server")
    return archive
