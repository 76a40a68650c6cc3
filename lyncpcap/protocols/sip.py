"""SIP messages over TCP streams and UDP datagrams, with the MS-SIPAE parts Lync uses.

Framing reuses the HTTP message reader; `SipMessage` exposes Call-ID/CSeq/From/To, the auth headers
(`WWW-Authenticate`, `Authorization`, `Proxy-*`, `Authentication-Info`) and `ms-diagnostics`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.protocols import httpauth
from lyncpcap.protocols.http import SIP_COMPACT, Headers, MessageStream, looks_like_sip, parse_header_block


@dataclass(slots=True)
class SipMessage:
    start: str
    headers: Headers
    body: bytes
    first_frame: int
    frame: int
    first_ts: float
    ts: float
    direction: int = 0  # 0 client→server (connection initiator) for TCP, as delivered for UDP

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0")

    @property
    def method(self) -> str | None:
        return self.start.split(" ", 1)[0] if self.is_request else None

    @property
    def uri(self) -> str | None:
        if not self.is_request:
            return None
        parts = self.start.split(" ")
        return parts[1] if len(parts) > 1 else None

    @property
    def status(self) -> int | None:
        if self.is_request:
            return None
        try:
            return int(self.start.split(" ", 2)[1])
        except (IndexError, ValueError):
            return None

    @property
    def reason(self) -> str:
        parts = self.start.split(" ", 2)
        return parts[2] if not self.is_request and len(parts) > 2 else ""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        v = (self.headers.get("CSeq") or "").split()
        try:
            return int(v[0]), (v[1].upper() if len(v) > 1 else "")
        except (IndexError, ValueError):
            return -1, ""

    @property
    def from_uri(self) -> str | None:
        return name_addr_uri(self.headers.get("From"))

    @property
    def to_uri(self) -> str | None:
        return name_addr_uri(self.headers.get("To"))

    @property
    def epid(self) -> str | None:
        m = re.search(r";\s*epid=([^;\s]+)", self.headers.get("From") or "")
        return m.group(1) if m else None

    def auth(self, header: str) -> list[httpauth.AuthValue]:
        return httpauth.parse_all(self.headers.get_all(header))

    @property
    def diagnostics(self) -> list[str]:
        return self.headers.get_all("ms-diagnostics") + self.headers.get_all("ms-diagnostics-public")


_URI_RE = re.compile(r"<([^>]+)>")


def name_addr_uri(value: str | None) -> str | None:
    """`"Alice" <sip:alice@contoso.com>;tag=…` → `sip:alice@contoso.com`."""
    if not value:
        return None
    m = _URI_RE.search(value)
    uri = m.group(1) if m else value.split(";", 1)[0].strip()
    return uri.split(";", 1)[0] if uri.lower().startswith(("sip:", "sips:", "tel:")) else uri


def parse_datagram(data: bytes, frame: int, ts: float) -> SipMessage:
    """One SIP message from a UDP datagram."""
    if not looks_like_sip(data):
        raise MalformedError("not a SIP message")
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = data.find(b"\n\n"), 2
    if end < 0:
        end, sep = len(data), 0
    start, headers = parse_header_block(data[:end], compact=SIP_COMPACT)
    body = data[end + sep :]
    cl = headers.get("Content-Length")
    if cl is not None:
        try:
            body = body[: int(cl)]
        except ValueError:
            pass
    return SipMessage(start, headers, body, frame, frame, ts, ts)


class SipStream:
    """A flows StreamSink for SIP over a TCP connection (or decrypted TLS)."""

    def __init__(self, on_message: Callable[[SipMessage], None]) -> None:
        self.on_message_cb = on_message
        self.stream = MessageStream("sip", self._message, self._body_rule)

    @property
    def done(self) -> bool:
        return self.stream.done

    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        self.stream.on_data(direction, data, ts, frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.stream.on_gap(direction, size, ts, frame)

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self.stream.on_close(ts, frame, how)

    @staticmethod
    def _body_rule(direction: int, start: str, headers: Headers) -> int | str | None:
        v = headers.get("Content-Length")
        if v is None:
            return 0  # RFC 3261 §18.3: over a stream a missing Content-Length means no body
        try:
            return max(0, int(v.strip()))
        except ValueError as exc:
            raise MalformedError("bad Content-Length") from exc

    def _message(
        self,
        direction: int,
        start: str,
        headers: Headers,
        body: bytes,
        body_size: int,
        first: tuple[int, float],
        last: tuple[int, float],
        truncated: bool,
    ) -> None:
        self.on_message_cb(SipMessage(start, headers, body, first[0], last[0], first[1], last[1], direction))
