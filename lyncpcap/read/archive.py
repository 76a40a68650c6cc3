"""What HTTP archives (Fiddler SAZ, browser HAR) hold once read: exchanges in the same
`HttpExchange` model the TCP path produces, with the addressing the archive knows.

Conventions for archives (they have no packets):
- `frame` of a step is the archive's own number for the exchange: the Fiddler session number of a
  SAZ (`raw/12_c.txt` → 12), the 1-based position of the entry in a HAR's `log.entries`.
- the client address is what the archive says: a SAZ's `x-clientip` session flag (an IPv4-mapped
  `::ffff:a.b.c.d` is shown as `a.b.c.d`); a HAR records none, so its client is named after the
  file, `har:<file name>` (one HAR is one browser).  An `X-Forwarded-For` request header still
  wins, as for packets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lyncpcap.protocols.http import HttpExchange


@dataclass(slots=True)
class ArchiveExchange:
    """One request/response of an archive, with where it went and on which client connection."""

    number: int  # session number (SAZ) or 1-based entry position (HAR): the step's frame
    exchange: HttpExchange
    client: str
    server: str
    scheme: str  # "https" or "http"
    client_port: int | None = None
    server_port: int | None = None
    connection: str = ""  # exchanges with the same value shared one client connection


@dataclass(slots=True)
class Archive:
    format: str  # "saz" or "har"
    exchanges: list[ArchiveExchange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entries: int = 0  # sessions / entries in the file, including skipped ones


def plain_address(text: str | None) -> str | None:
    """An IP address as lyncpcap writes it (IPv4-mapped IPv6 unwrapped), or None if it is not one."""
    if not text:
        return None
    value = text.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def split_url(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port or None, origin-form target) of an absolute http(s) URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", None, url
    authority, slash, path = rest.partition("/")
    target = "/" + path if slash else "/"
    authority = authority.rsplit("@", 1)[-1]
    host, port = authority, None
    if authority.startswith("["):
        end = authority.find("]")
        host = authority[1:end] if end > 0 else authority
        tail = authority[end + 1 :] if end > 0 else ""
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif authority.count(":") == 1:
        h, p = authority.split(":")
        if p.isdigit():
            host, port = h, int(p)
    return scheme.lower(), host, port, target
