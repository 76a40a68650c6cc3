"""Fiddler session archives (SAZ): a zip with `raw/NN_c.txt` (the request as Fiddler received it),
`raw/NN_s.txt` (the response) and `raw/NN_m.xml` (timers and session flags) per session NN.

The request and response bytes go through the same HTTP framing as a TCP stream (`HttpStream`:
chunked bodies, gzip), so the exchanges are the ones the packet path would produce; their times
are Fiddler's timers.  Conventions (frame = session number, client = `x-clientip`) are in
`read/archive.py`.  CONNECT sessions are tunnels, not exchanges: they are counted, and a SAZ made
without HTTPS decryption says so in a warning.
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

from lyncpcap.errors import CaptureError
from lyncpcap.protocols.http import Headers, HttpExchange, HttpStream
from lyncpcap.read.archive import Archive, ArchiveExchange, plain_address, split_url
from lyncpcap.read.layers import EARLIEST_TIME, LATEST_TIME
from lyncpcap.steps.http import HTTPS_PORTS

__all__ = ["ZIP_DAMAGE", "parse_timer", "read"]

_ENTRY = re.compile(r"^raw[/\\](\d+)_([csm])\.(txt|xml)$", re.IGNORECASE)
_TIMER = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)
#: What a SAZ session may hold at most; larger members mean a damaged or hostile archive.
MAX_MEMBER = 256 << 20
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


def _meta(raw: bytes | None, where: str) -> _Meta:
    if raw is None:
        return _Meta({}, {})
    try:
        root = SafeET.fromstring(raw)
    except Exception as exc:  # defusedxml raises ParseError and its own refusals
        raise ValueError(f"{where}: not readable XML ({exc})") from None
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


def _parse(number: int, request: bytes, response: bytes | None) -> HttpExchange | None:
    """The exchange the session's bytes hold, framed as on a connection."""
    got: list[HttpExchange] = []
    stream = HttpStream(got.append)
    stream.on_data(0, request, 0.0, number)
    if response:
        stream.on_data(1, response, 0.0, number)
    stream.on_close(0.0, number, "fin")
    return got[0] if got else None


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

        def load(info: zipfile.ZipInfo | None) -> bytes | None:
            if info is None:
                return None
            if info.file_size > MAX_MEMBER:
                raise CaptureError(p, f"{info.filename} is {info.file_size} bytes: too large for a SAZ session")
            try:
                return z.read(info)
            except RuntimeError as exc:  # encrypted members
                raise CaptureError(p, f"password-protected SAZ ({exc}); save it again in Fiddler without a password") from None
            except NotImplementedError as exc:
                raise CaptureError(p, f"cannot unpack {info.filename}: {exc}") from None
            except ZIP_DAMAGE as exc:
                raise CaptureError(p, f"damaged SAZ member {info.filename}: {exc}") from None

        archive = Archive("saz", entries=len(members))
        tunnels: list[str] = []
        unreadable = 0
        for number in sorted(members):
            parts = members[number]
            request = load(parts.get("c"))
            if not request:
                unreadable += 1
                continue
            try:
                meta = _meta(load(parts.get("m")), f"raw/{number}_m.xml")
            except ValueError as exc:
                raise CaptureError(p, f"damaged SAZ session metadata: {exc}") from None
            ex = _parse(number, request, load(parts.get("s")))
            if ex is None:
                unreadable += 1
                continue
            req = ex.request
            if req.method == "CONNECT":
                tunnels.append(req.target)
                continue
            scheme, host, port, target = split_url(req.target)
            if not scheme:
                # origin-form (some tools write it): the scheme from the flags, else from the port
                _, host, port, _ = split_url("http://" + (req.host or ""))
                https = "x-https" in meta.flags or meta.flags.get("x-originalurl", "").startswith("https:")
                scheme = "https" if https or port in HTTPS_PORTS else "http"
            if host and req.headers.get("Host") is None:
                req.headers = Headers([*req.headers, ("Host", host if port is None else f"{host}:{port}")])
            req.target = target  # origin-form, as a server receives it
            t = meta.timers
            begin = _first(t, "ClientBeginRequest", "ClientConnected", "FiddlerBeginRequest")
            sent = _first(t, "ClientDoneRequest", "GotRequestHeaders") or begin
            if begin is None or sent is None:
                raise CaptureError(p, f"session {number} has no ClientBeginRequest timer in raw/{number}_m.xml")
            req.first_ts, req.ts, req.first_frame, req.frame = begin, max(sent, begin), number, number
            resp = ex.response
            if resp is not None:
                done = _first(t, "ClientDoneResponse", "ServerDoneResponse") or req.ts
                started = _first(t, "ClientBeginResponse", "ServerBeginResponse", "GotResponseHeaders") or done
                resp.first_ts, resp.ts, resp.first_frame, resp.frame = max(started, req.ts), max(done, req.ts), number, number
            client = plain_address(meta.flags.get("x-clientip")) or f"saz:{p.name}"
            client_port = _int(meta.flags.get("x-clientport"))
            server = plain_address(meta.flags.get("x-hostip")) or host or "unknown"
            server_port = port if port is not None else (443 if scheme == "https" else 80)
            connection = f"{client}|{client_port}" if client_port is not None else f"{client}|{scheme}://{host}:{server_port}"
            archive.exchanges.append(
                ArchiveExchange(number, ex, client, server, scheme, client_port, server_port, connection)
            )
        if tunnels and not archive.exchanges:
            archive.warnings.append(
                f"{len(tunnels)} CONNECT tunnel(s) (e.g. to {tunnels[0]}) and no decrypted HTTPS: "
                "turn on Tools › Options › HTTPS › Decrypt HTTPS traffic in Fiddler and capture again"
            )
        elif tunnels:
            archive.warnings.append(f"{len(tunnels)} CONNECT tunnel session(s) skipped (they carry no request of their own)")
        if unreadable:
            archive.warnings.append(f"{unreadable} session(s) without a readable request skipped")
        return archive


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
