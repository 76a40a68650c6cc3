"""Fiddler session archives (SAZ): a zip with `raw/NN_c.txt` (the request as Fiddler received it),
`raw/NN_s.txt` (the response) and `raw/NN_m.xml` (timers and session flags) per session NN.

Fiddler Classic, FiddlerCap and Fiddler Everywhere write the same layout; the width of NN varies
(`1_c.txt`, `01_c.txt`, `0001_c.txt`).  Each file holds one message, so the file's end is the
message's end: the body is what follows the head, whatever Content-Length says (Fiddler rewrites
bodies it decodes), de-chunked when it is still chunked and Content-Encoding gzip/deflate undone
when it is still compressed (`Decode` in Fiddler leaves some headers behind).  Times are Fiddler's
timers.  Conventions (frame = session number, client = `x-clientip`) are in `read/archive.py`.

What Fiddler adds of its own: CONNECT sessions are tunnels, not exchanges (counted; a SAZ made
without HTTPS decryption says so in a warning; a CONNECT Fiddler could not open is kept, as a
forward proxy's failure); a response Fiddler wrote itself (`502 Fiddler - Connection Failed`,
`[Fiddler] DNS Lookup for … failed`) is the proxy's failure to reach the server, not the server's
answer.  A damaged session (unreadable member, metadata or request, no timers) is skipped, counted
and named in a warning; only an archive with no usable session is an error.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import defusedxml.ElementTree as SafeET

from lyncpcap.errors import CaptureError, MalformedError
from lyncpcap.protocols.http import (
    MAX_BODY_KEEP,
    Headers,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    decode_body,
    parse_header_block,
)
from lyncpcap.read.archive import Archive, ArchiveExchange, plain_address, split_url
from lyncpcap.read.layers import EARLIEST_TIME, LATEST_TIME
from lyncpcap.steps.http import HTTPS_PORTS

__all__ = ["ZIP_DAMAGE", "parse_timer", "read"]

_ENTRY = re.compile(r"^raw[/\\](\d+)_([csm])\.(txt|xml)$", re.IGNORECASE)
_TIMER = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)
_START = re.compile(rb"^[A-Za-z_-]+ \S+ HTTP/\d")
#: Bytes of a session's request or response file that are read: the head and more of the body
#: than is kept (`MAX_BODY_KEEP`); a larger file (a download captured beside the sign-in) is cut.
MAX_MESSAGE_READ = 4 << 20
#: Metadata larger than this is damage (Fiddler's `_m.xml` is a few kB).
MAX_META = 4 << 20
#: What `zipfile` raises on a damaged archive: besides BadZipFile, a bad deflate stream (zlib.error),
#: a cut file (EOFError), a mangled header's version or method (NotImplementedError), offsets that
#: point nowhere (ValueError, OSError, struct.error).
ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError, struct.error)


def parse_timer(text: str | None) -> float | None:
    """A Fiddler timer (.NET round-trip format, e.g. `2014-02-20T11:30:05.1234567+01:00`) as
    seconds since the epoch; None for absent or unset (`0001-01-01T00:00:00`) timers, and for
    timers before 1970 or after 2106 (damaged).  A timer without an offset is taken as UTC."""
    if not text:
        return None
    m = _TIMER.match(text.strip())
    if m is None or m.group(1) == "0001":
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    fraction = m.group(7) or "0"
    tz = UTC
    zone = m.group(8)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None
    ts = when.timestamp() + int(fraction) / 10 ** len(fraction)
    return ts if EARLIEST_TIME <= ts < LATEST_TIME else None  # outside any capture's time: damaged


@dataclass(slots=True)
class _Meta:
    timers: dict[str, float]
    flags: dict[str, str]


class _Damaged(ValueError):
    """A session that cannot be read; the message names the member and the problem."""


def _meta(raw: bytes | None, where: str) -> _Meta:
    if raw is None:
        return _Meta({}, {})
    try:
        root = SafeET.fromstring(raw)
    except Exception as exc:  # defusedxml raises ParseError and its own refusals
        raise _Damaged(f"damaged SAZ session metadata: {where}: not readable XML ({exc})") from None
    timers: dict[str, float] = {}
    flags: dict[str, str] = {}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "SessionTimers":
            for name, value in el.attrib.items():
                t = parse_timer(value)
                if t is not None:
                    timers[name] = t
        elif tag == "SessionFlag":
            name = el.attrib.get("N")
            if name:
                flags[name.lower()] = el.attrib.get("V", "")
    return _Meta(timers, flags)


def _first(timers: dict[str, float], *names: str) -> float | None:
    for n in names:
        if n in timers:
            return timers[n]
    return None


# -- one message per file ---------------------------------------------------------------------------


def _head(raw: bytes) -> tuple[str, Headers, bytes]:
    """Start line, headers and the rest of the file (the body)."""
    raw = raw.lstrip(b"\r\n")
    end, sep = raw.find(b"\r\n\r\n"), 4
    lf = raw.find(b"\n\n")
    if lf >= 0 and (end < 0 or lf < end):  # a file written with bare LF line ends
        end, sep = lf, 2
    head, rest = (raw, b"") if end < 0 else (raw[:end], raw[end + sep :])
    start, headers = parse_header_block(head)
    # HTTP/2 pseudo-headers (":authority: host") parse as a header without a name
    items = [(k, v) for k, v in headers if k]
    if len(items) != len(headers):
        authority = next((v.partition(":")[2].strip() for k, v in headers if not k and v.startswith("authority:")), None)
        if authority and not any(k.lower() == "host" for k, _ in items):
            items.append(("Host", authority))
        headers = Headers(items)
    return start, headers, rest


def _dechunk(data: bytes) -> bytes | None:
    """The data of a complete chunked body; None when `data` is not one (Fiddler removed the
    chunking and left the header, or the body was cut before its last chunk)."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0 or eol - pos > 1024:
            return None
        try:
            size = int(data[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return None
        pos = eol + 2
        if size == 0:
            return bytes(out)
        if pos + size > len(data):
            return None
        if len(out) < MAX_BODY_KEEP:
            out += data[pos : pos + size]
        pos += size
        if data[pos : pos + 2] != b"\r\n":
            return None
        pos += 2


def _body(headers: Headers, rest: bytes, cut: bool) -> tuple[bytes, int, bool]:
    """(body as kept, its size, whether it is incomplete) of a message whose file ended at `rest`'s end."""
    truncated = cut
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        data = _dechunk(rest)
        if data is not None:
            rest = data
    else:
        length = headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > len(rest):
            truncated = True  # the session was aborted before the whole body came
    return decode_body(rest[:MAX_BODY_KEEP], headers), len(rest), truncated


def _request(number: int, raw: bytes, cut: bool) -> HttpRequest:
    start, headers, rest = _head(raw)
    if not _START.match(start.encode("utf-8", "replace")):
        raise _Damaged(f"raw/{number}_c.txt: not an HTTP request ({start[:40]!r})")
    method, target, version = start.split(" ", 2)
    if method.upper() == "CONNECT":
        rest = b""  # Fiddler's description of the client's TLS hello, not a body
    body, size, truncated = _body(headers, rest, cut)
    return HttpRequest(method.upper(), target, version.strip(), headers, body, size, truncated=truncated)


def _response(number: int, raw: bytes, cut: bool, method: str) -> HttpResponse | None:
    interim: list[int] = []
    while True:
        start, headers, rest = _head(raw)
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[0].upper().startswith("HTTP/") or not parts[1].isdigit():
            raise _Damaged(f"raw/{number}_s.txt: not an HTTP response ({start[:40]!r})")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101 and rest.lstrip(b"\r\n").startswith(b"HTTP/"):
            interim.append(status)  # 100 Continue before the answer
            raw = rest
            continue
        break
    if status == 0:
        return None  # Fiddler's placeholder for a session that never got an answer
    no_body = method in ("HEAD", "CONNECT") or 100 <= status < 200 or status in (204, 304)
    body, size, truncated = _body(headers, b"" if no_body else rest, cut)
    reason = parts[2].strip() if len(parts) > 2 else ""
    return HttpResponse(status, reason, parts[0].upper(), headers, body, size, truncated=truncated, interim=interim)


def _fiddler_says(resp: HttpResponse) -> str | None:
    """Fiddler's own words when it wrote the response itself (it could not reach the server)."""
    body = resp.body.lstrip()
    if not (resp.reason.startswith("Fiddler") or body.startswith(b"[Fiddler]")):
        return None
    text = body.decode("utf-8", "replace") if body.startswith(b"[Fiddler]") else resp.reason
    text = re.sub(r"<br\s*/?>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


# -- the archive ------------------------------------------------------------------------------------


def read(path: str | Path) -> Archive:
    """Read a SAZ file; `CaptureError` with a one-line reason when it is not a usable SAZ."""
    p = Path(path)
    try:
        z = zipfile.ZipFile(p)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise CaptureError(p, f"cannot read: {exc.strerror or exc}") from None
    except ZIP_DAMAGE as exc:
        raise CaptureError(p, f"not a readable Fiddler SAZ archive (damaged zip: {exc})") from None
    with z:
        members: dict[int, dict[str, zipfile.ZipInfo]] = {}
        for info in z.infolist():
            m = _ENTRY.match(info.filename)
            if m:
                members.setdefault(int(m.group(1)), {})[m.group(2).lower()] = info
        if not members:
            raise CaptureError(p, "not a Fiddler SAZ archive: no raw/NN_c.txt sessions in the zip")
        if all(i.flag_bits & 0x1 for parts in members.values() for i in parts.values()):
            method = " (AES)" if any(i.compress_type == 99 for parts in members.values() for i in parts.values()) else ""
            raise CaptureError(
                p, f"password-protected SAZ{method}: save it again in Fiddler without a password (File › Save › All Sessions)"
            )

        def load(info: zipfile.ZipInfo | None, limit: int) -> tuple[bytes, bool] | None:
            """The member's bytes (at most `limit`) and whether it was longer."""
            if info is None:
                return None
            if info.flag_bits & 0x1:
                raise _Damaged(f"{info.filename} is password-protected")
            try:
                with z.open(info) as f:
                    data = f.read(limit + 1)
            except ZIP_DAMAGE as exc:
                raise _Damaged(f"damaged SAZ member {info.filename}: {exc}") from None
            return data[:limit], len(data) > limit

        archive = Archive("saz", entries=len(members))
        tunnels: list[str] = []
        unreadable = 0
        damaged: list[str] = []
        fiddler: list[tuple[int, HttpResponse, str]] = []
        for number in sorted(members):
            parts = members[number]
            try:
                loaded = load(parts.get("c"), MAX_MESSAGE_READ)
                if not loaded or not loaded[0].strip():
                    unreadable += 1
                    continue
                meta_raw = load(parts.get("m"), MAX_META)
                if meta_raw is not None and meta_raw[1]:
                    raise _Damaged(f"damaged SAZ session metadata: raw/{number}_m.xml is larger than {MAX_META} bytes")
                meta = _meta(meta_raw[0] if meta_raw else None, f"raw/{number}_m.xml")
                req = _request(number, *loaded)
                answer = load(parts.get("s"), MAX_MESSAGE_READ)
                resp = _response(number, *answer, req.method) if answer and answer[0].strip() else None
            except (_Damaged, MalformedError) as exc:
                damaged.append(str(exc))
                continue
            said = _fiddler_says(resp) if resp is not None else None
            if req.method == "CONNECT":
                if resp is None or 200 <= resp.status < 300:
                    tunnels.append(req.target)
                    continue
                # a tunnel Fiddler could not open: the forward proxy's failure to reach the server
                host, _, port_text = req.target.rpartition(":")
                port = int(port_text) if port_text.isdigit() else 443
                host = host.strip("[]") or req.target
                scheme = "https" if port in HTTPS_PORTS else "http"
            else:
                scheme, host, url_port, target = split_url(req.target)
                if not scheme:
                    # origin-form (some tools write it): the scheme from the flags, else from the port
                    _, host, url_port, _ = split_url("http://" + (req.host or ""))
                    https = "x-https" in meta.flags or meta.flags.get("x-originalurl", "").startswith("https:")
                    scheme = "https" if https or url_port in HTTPS_PORTS else "http"
                port = url_port if url_port is not None else (443 if scheme == "https" else 80)
                if host and req.headers.get("Host") is None:
                    req.headers = Headers([*req.headers, ("Host", host if url_port is None else f"{host}:{url_port}")])
                if said is None:
                    req.target = target  # origin-form, as a server receives it
                else:
                    # absolute-form, as the client sent it to its forward proxy (Fiddler), which answered
                    req.target = f"{scheme}://{req.headers.get('Host') or host}{target}"
            t = meta.timers
            begin = _first(t, "ClientBeginRequest", "ClientConnected", "FiddlerBeginRequest")
            sent = _first(t, "ClientDoneRequest", "GotRequestHeaders") or begin
            if begin is None or sent is None:
                damaged.append(f"session {number} has no ClientBeginRequest timer in raw/{number}_m.xml")
                continue
            req.first_ts, req.ts, req.first_frame, req.frame = begin, max(sent, begin), number, number
            if resp is not None:
                done = _first(t, "ClientDoneResponse", "ServerDoneResponse") or req.ts
                started = _first(t, "ClientBeginResponse", "ServerBeginResponse", "GotResponseHeaders") or done
                resp.first_ts, resp.ts, resp.first_frame, resp.frame = max(started, req.ts), max(done, req.ts), number, number
                if said is not None:
                    fiddler.append((number, resp, said))
            client = plain_address(meta.flags.get("x-clientip")) or f"saz:{p.name}"
            client_port = _int(meta.flags.get("x-clientport"))
            server = plain_address(meta.flags.get("x-hostip")) or host or "unknown"
            connection = f"{client}|{client_port}" if client_port is not None else f"{client}|{scheme}://{host}:{port}"
            ex = HttpExchange(request=req, response=resp, index=0)
            archive.exchanges.append(ArchiveExchange(number, ex, client, server, scheme, client_port, port, connection))
        if not archive.exchanges and damaged:
            raise CaptureError(p, damaged[0] if len(damaged) == 1 else f"{damaged[0]} (and {len(damaged) - 1} more damaged session(s))")
        decrypted = any(x.exchange.request.method != "CONNECT" for x in archive.exchanges)
        if tunnels and not decrypted:
            archive.warnings.append(
                f"{len(tunnels)} CONNECT tunnel(s) (e.g. to {tunnels[0]}) and no decrypted HTTPS: "
                "turn on Tools › Options › HTTPS › Decrypt HTTPS traffic in Fiddler and capture again"
            )
        elif tunnels:
            archive.warnings.append(f"{len(tunnels)} CONNECT tunnel session(s) skipped (they carry no request of their own)")
        if fiddler:
            number, resp, said = fiddler[0]
            archive.warnings.append(
                f"{len(fiddler)} response(s) written by Fiddler itself, not by the server: Fiddler could not reach it "
                f"(e.g. session {number}, {resp.status} {resp.reason}: {said})"
            )
        brotli = [x.number for x in archive.exchanges if x.exchange.response is not None
                  and (x.exchange.response.headers.get("Content-Encoding") or "").strip().lower() == "br"]
        if brotli:
            archive.warnings.append(
                f"{len(brotli)} response body(ies) still brotli-compressed (Content-Encoding: br, e.g. session {brotli[0]}): "
                "lyncpcap cannot read them; in Fiddler select the sessions, Decode Selected Sessions, and save again"
            )
        if unreadable:
            archive.warnings.append(f"{unreadable} session(s) without a readable request skipped")
        if damaged:
            archive.warnings.append(f"{len(damaged)} damaged session(s) skipped (e.g. {damaged[0]})")
        return archive


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
