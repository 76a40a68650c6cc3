"""HTTP/1.x over a reassembled TCP stream: framing, request/response pairing, body decoding.

Sans-I/O: `HttpStream` is fed in-order bytes per direction (it is a flows `StreamSink`) and calls
back with one `HttpExchange` per request.  SIP reuses `Headers` and the start-line/header framing.
"""

from __future__ import annotations

import re
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from lyncpcap.errors import MalformedError

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_KEEP = 512 * 1024  # bytes of a body kept for decoding; the rest is counted and dropped
MAX_DECODED_BODY = 4 * 1024 * 1024  # guard against compression bombs

METHODS: frozenset[bytes] = frozenset(
    {
        b"GET",
        b"POST",
        b"PUT",
        b"DELETE",
        b"HEAD",
        b"OPTIONS",
        b"PATCH",
        b"TRACE",
        b"CONNECT",
        b"PROPFIND",
        b"PROPPATCH",
        b"MKCOL",
        b"COPY",
        b"MOVE",
        b"LOCK",
        b"UNLOCK",
        b"SEARCH",
        b"RPC_IN_DATA",
        b"RPC_OUT_DATA",
    }
)


class Headers:
    """Ordered header list with case-insensitive lookup (names keep their original spelling)."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = items or []
        self._index: dict[str, list[str]] | None = None  # lower-cased name -> values, made on first use

    def _values(self, name: str) -> list[str] | None:
        index = self._index
        if index is None:
            index = self._index = {}
            for k, v in self._items:
                index.setdefault(k.lower(), []).append(v)
        return index.get(name.lower())

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._values(name) or ())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return [k for k, _ in self._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def parse_header_block(block: bytes, *, compact: dict[str, str] | None = None) -> tuple[str, Headers]:
    """Split a message head into its start line and headers (obs-fold continuation lines joined)."""
    text = block.decode("utf-8", errors="replace")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    if not lines or not lines[0]:
        raise MalformedError("empty start line")
    start = lines[0].strip()
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and items:
            k, v = items[-1]
            items[-1] = (k, f"{v} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue  # tolerate junk lines, as browsers and servers do
        name = name.strip()
        if compact and len(name) == 1:
            name = compact.get(name.lower(), name)
        items.append((name, value.strip()))
    return start, Headers(items)


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    version: str
    headers: Headers
    body: bytes = b""
    body_size: int = 0
    first_frame: int = 0
    frame: int = 0  # frame that completed the request (tshark's convention)
    first_ts: float = 0.0
    ts: float = 0.0
    truncated: bool = False  # part of the message fell in a capture gap
    peer_acked: int | None = None  # server bytes the client had acknowledged when it sent this

    @property
    def host(self) -> str | None:
        h = self.headers.get("Host")
        if h:
            return h
        if self.target.startswith(("http://", "https://")):
            return self.target.split("/", 3)[2]
        return None

    @property
    def path(self) -> str:
        """The origin-form path; "" for CONNECT's authority-form (host:port) and OPTIONS *."""
        t = self.target
        if t.startswith(("http://", "https://")):
            parts = t.split("/", 3)
            t = "/" + (parts[3] if len(parts) > 3 else "")
        elif self.method == "CONNECT" or t == "*":
            return ""
        return t


@dataclass(slots=True)
class HttpResponse:
    status: int
    reason: str
    version: str
    headers: Headers
    body: bytes = b""
    body_size: int = 0
    first_frame: int = 0
    frame: int = 0
    first_ts: float = 0.0
    ts: float = 0.0
    truncated: bool = False
    interim: list[int] = field(default_factory=list)  # 1xx statuses that preceded it
    offset: int = 0  # stream offset of the response's first byte


@dataclass(slots=True)
class HttpExchange:
    request: HttpRequest
    response: HttpResponse | None
    index: int  # position of the request on its connection (0-based)
    response_lost: bool = False  # the answer fell into a capture gap
    error: str | None = None  # why there is no answer, as the client put it (a HAR's net::ERR_…)


def decode_body(body: bytes, headers: Headers) -> bytes:
    """Undo Content-Encoding gzip/deflate (bounded); other encodings are returned as they are."""
    enc = (headers.get("Content-Encoding") or "").strip().lower()
    if not body or enc in ("", "identity"):
        return body
    try:
        if enc in ("gzip", "x-gzip"):
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            # Servers send either zlib-wrapped or raw deflate; try both.
            d = zlib.decompressobj() if body[:1] == b"\x78" else zlib.decompressobj(-zlib.MAX_WBITS)
        else:
            return body
        out = d.decompress(body, MAX_DECODED_BODY)
        return out
    except zlib.error:
        return body


class _Chunked:
    """Incremental chunked transfer-coding decoder."""

    __slots__ = ("done", "need", "state")

    def __init__(self) -> None:
        self.state = "size"  # size | data | data-crlf | trailer
        self.need = 0
        self.done = False

    def feed(self, buf: bytearray, keep: bytearray, limit: int) -> tuple[int, int]:
        """Consume from `buf`; return (bytes consumed, data bytes seen)."""
        pos = 0
        seen = 0
        n = len(buf)
        while pos < n and not self.done:
            if self.state == "size":
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > 1024:
                        raise MalformedError("chunk size line too long")
                    break
                line = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
                try:
                    self.need = int(line, 16)
                except ValueError as exc:
                    raise MalformedError("bad chunk size") from exc
                pos = eol + 2
                self.state = "data" if self.need else "trailer"
            elif self.state == "data":
                take = min(self.need, n - pos)
                if len(keep) < limit:
                    keep += buf[pos : pos + min(take, limit - len(keep))]
                seen += take
                pos += take
                self.need -= take
                if self.need == 0:
                    self.state = "data-crlf"
            elif self.state == "data-crlf":
                if n - pos < 2:
                    break
                pos += 2
                self.state = "size"
            else:  # trailer: lines until an empty one
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if eol == pos:
                    self.done = True
                pos = eol + 2
        return pos, seen


class _Direction:
    """Buffered bytes of one direction with the frames that delivered them."""

    __slots__ = ("base", "buf", "marks")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0] (capture gaps included, so offsets follow TCP)
        # (end offset exclusive, frame, ts, peer_acked) of each delivery still (partly) in the buffer
        self.marks: deque[tuple[int, int, float, int | None]] = deque()

    def add(self, data: bytes, frame: int, ts: float, peer_acked: int | None = None) -> None:
        self.buf += data
        self.marks.append((self.base + len(self.buf), frame, ts, peer_acked))

    def at(self, rel: int) -> tuple[int, float]:
        """Frame and time of the delivery holding relative offset `rel` (0 = first buffered byte)."""
        mark = self.mark(rel)
        return mark[1], mark[2]

    def mark(self, rel: int) -> tuple[int, int, float, int | None]:
        off = self.base + rel
        for m in self.marks:
            if off < m[0]:
                return m
        if self.marks:
            return self.marks[-1]
        return 0, 0, 0.0, None

    def skip(self, size: int) -> None:
        """A capture gap: drop what is buffered and move the offset past the missing bytes."""
        self.clear()
        self.base += size

    def consume(self, n: int) -> None:
        del self.buf[:n]
        self.base += n
        while self.marks and self.marks[0][0] <= self.base:
            self.marks.popleft()

    def clear(self) -> None:
        self.consume(len(self.buf))


class _MessageReader:
    """Frames start-line + headers + body messages out of one direction (shared by HTTP and SIP)."""

    def __init__(self, is_request_side: bool, protocol: str) -> None:
        self.d = _Direction()
        self.is_request_side = is_request_side
        self.protocol = protocol  # "http" | "sip"
        self.head: tuple[str, Headers] | None = None
        self.head_frame = (0, 0.0)
        self.head_last = (0, 0.0)
        self.head_offset = 0  # stream offset of the message's first byte
        self.head_acked: int | None = None  # what the sender had acknowledged of the other direction
        self.body = bytearray()
        self.body_size = 0
        self.remaining: int | None = None  # bytes of body still to read; None = until close
        self.chunked: _Chunked | None = None
        self.resync = False  # after a gap: drop bytes until a plausible start line
        self.truncated = False

    def start_looks_valid(self, data: bytes | bytearray) -> bool:
        if self.protocol == "sip":
            return looks_like_sip(data)
        if self.is_request_side:
            return looks_like_http_request(data)
        return bytes(data[:5]) == b"HTTP/"

    def resynchronise(self) -> bool:
        """After a gap: skip to the next message start, wherever it is in the buffer; True when found."""
        buf = self.d.buf
        m = START_PATTERNS[(self.protocol, self.is_request_side)].search(buf)
        if m is None:
            keep = min(len(buf), RESYNC_KEEP)  # a start line may be split across deliveries
            self.d.consume(len(buf) - keep)
            return False
        self.d.consume(m.start())
        self.resync = False
        return True


_METHOD_ALT = b"|".join(sorted(METHODS, key=lambda m: -len(bytes(m))))
START_PATTERNS: dict[tuple[str, bool], re.Pattern[bytes]] = {
    ("http", True): re.compile(rb"(?:" + _METHOD_ALT + rb") \S+ HTTP/1\.[01]\r?\n"),
    ("http", False): re.compile(rb"HTTP/1\.[01] \d{3}[ \r\n]"),
    ("sip", True): re.compile(rb"[A-Z]{3,12} (?:sips?|tel):\S+ SIP/2\.0\r?\n"),
    ("sip", False): re.compile(rb"SIP/2\.0 \d{3}[ \r\n]"),
}
RESYNC_KEEP = 128


def looks_like_http_request(data: bytes | bytearray) -> bool:
    sp = data.find(b" ", 0, 14)
    return sp > 0 and bytes(data[:sp]) in METHODS


SIP_METHODS: frozenset[bytes] = frozenset(
    {
        b"REGISTER",
        b"INVITE",
        b"ACK",
        b"BYE",
        b"CANCEL",
        b"OPTIONS",
        b"SUBSCRIBE",
        b"NOTIFY",
        b"MESSAGE",
        b"INFO",
        b"PRACK",
        b"UPDATE",
        b"REFER",
        b"PUBLISH",
        b"SERVICE",
        b"BENOTIFY",
        b"NEGOTIATE",
    }
)


def looks_like_sip(data: bytes | bytearray) -> bool:
    if bytes(data[:8]) == b"SIP/2.0 ":
        return True
    sp = data.find(b" ", 0, 12)
    return sp > 0 and bytes(data[:sp]) in SIP_METHODS


MessageHead = tuple[str, Headers]
OnMessage = Callable[[MessageHead, bytes, int, tuple[int, float], tuple[int, float], bool], None]


class MessageStream:
    """Both directions of a text-protocol connection; calls `on_message(direction, ...)` per message.

    HTTP needs to know a request's method to frame its response (HEAD, CONNECT), so the HTTP layer
    tells the reader, through `body_rule`, how long a body is.
    """

    def __init__(
        self,
        protocol: str,
        on_message: Callable[[int, str, Headers, bytes, int, tuple[int, float], tuple[int, float], bool], None],
        body_rule: Callable[[int, str, Headers], int | str | None],
        on_lost: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.protocol = protocol
        self.readers = (_MessageReader(True, protocol), _MessageReader(False, protocol))
        self.on_message = on_message
        self.body_rule = body_rule
        self.on_lost = on_lost
        self.done = False
        self.errors = 0
        self.peer_acked: int | None = None  # set by the flows layer before each on_data

    # -- StreamSink ---------------------------------------------------------------------------
    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        r = self.readers[direction]
        r.d.add(data, frame, ts, self.peer_acked)
        try:
            self._drain(direction, r)
        except MalformedError:
            self.errors += 1
            self._reset(r)
            r.resync = True
            if self.on_lost:  # unreadable bytes where an answer should start: that answer is lost
                self.on_lost(direction, False)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        r = self.readers[direction]
        head_seen = r.head is not None
        if head_seen:
            # the start line and headers arrived: the message is known, only its body is cut
            self._emit(direction, r, truncated=True)
        self._reset(r)
        r.d.skip(size)
        r.resync = True
        if self.on_lost:
            self.on_lost(direction, head_seen)

    def on_close(self, ts: float, frame: int, how: str) -> None:
        for direction, r in enumerate(self.readers):
            if r.head is not None:
                # body delimited by close, or cut short by the end of the capture
                self._emit(direction, r, truncated=r.remaining not in (None, 0) or r.chunked is not None)
                self._reset(r)

    # -- framing ------------------------------------------------------------------------------
    def _reset(self, r: _MessageReader) -> None:
        r.head = None
        r.body = bytearray()
        r.body_size = 0
        r.remaining = 0
        r.chunked = None
        r.truncated = False

    def _drain(self, direction: int, r: _MessageReader) -> None:
        while True:
            if r.head is None:
                if r.resync and not r.resynchronise():
                    return
                buf = r.d.buf
                # SIP keep-alives (CRLF CRLF) and stray line ends between messages
                skip = 0
                while skip < len(buf) and buf[skip] in (13, 10):
                    skip += 1
                if skip:
                    r.d.consume(skip)
                    buf = r.d.buf
                if not buf:
                    return
                end = buf.find(b"\r\n\r\n")
                sep = 4
                if end < 0:
                    end = buf.find(b"\n\n")
                    sep = 2
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise MalformedError("header block too long")
                    if not r.start_looks_valid(buf[:16]) and len(buf) >= 16:
                        raise MalformedError("not a message start")
                    return
                if not r.start_looks_valid(buf[:16]):
                    raise MalformedError("not a message start")
                head_bytes = bytes(buf[:end])
                first_mark = r.d.mark(0)
                r.head_frame = (first_mark[1], first_mark[2])
                r.head_acked = first_mark[3]
                r.head_offset = r.d.base
                r.head_last = r.d.at(end + sep - 1)
                start, headers = parse_header_block(head_bytes, compact=SIP_COMPACT if self.protocol == "sip" else None)
                r.head = (start, headers)
                r.d.consume(end + sep)
                r.body = bytearray()
                r.body_size = 0
                r.chunked = None
                rule = self.body_rule(direction, start, headers)
                if rule == "chunked":
                    r.chunked = _Chunked()
                    r.remaining = None
                elif rule == "close":
                    r.remaining = None
                else:
                    assert isinstance(rule, int) or rule is None
                    r.remaining = rule or 0
                if r.remaining == 0 and r.chunked is None:
                    self._emit(direction, r, r.head_last)
                    self._reset(r)
                    continue
            # body
            buf = r.d.buf
            if not buf:
                return
            if r.chunked is not None:
                used, seen = r.chunked.feed(buf, r.body, MAX_BODY_KEEP)
                r.body_size += seen
                if r.chunked.done:
                    self._emit(direction, r, r.d.at(used - 1))
                    r.d.consume(used)
                    self._reset(r)
                    continue
                r.d.consume(used)
                return
            if r.remaining is None:  # until close
                self._keep(r, buf, len(buf))
                r.d.consume(len(buf))
                return
            take = min(r.remaining, len(buf))
            self._keep(r, buf, take)
            r.remaining -= take
            if r.remaining == 0:
                self._emit(direction, r, r.d.at(take - 1))
                r.d.consume(take)
                self._reset(r)
                continue
            r.d.consume(take)
            return

    @staticmethod
    def _keep(r: _MessageReader, buf: bytearray, n: int) -> None:
        r.body_size += n
        room = MAX_BODY_KEEP - len(r.body)
        if room > 0:
            r.body += buf[: min(n, room)]

    def _emit(self, direction: int, r: _MessageReader, last: tuple[int, float] | None = None, *, truncated: bool = False) -> None:
        assert r.head is not None
        start, headers = r.head
        if last is None:  # delimited by close or cut short: the newest delivery ends it
            last = (r.d.marks[-1][1], r.d.marks[-1][2]) if r.d.marks else r.head_last
        self.on_message(direction, start, headers, bytes(r.body), r.body_size, r.head_frame, last, truncated)


SIP_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
}


class HttpStream:
    """A flows StreamSink for one HTTP/1.x connection; emits `HttpExchange`s through `on_exchange`."""

    def __init__(self, on_exchange: Callable[[HttpExchange], None]) -> None:
        self.on_exchange = on_exchange
        self.pending: deque[HttpRequest] = deque()
        self.count = 0
        self._interim: list[int] = []
        self._gap_seen = False  # the server's direction lost bytes while requests were waiting
        # answers that came while their request's body was still arriving (a server that answers on
        # the headers: IIS's 401 to a large POST, Expect: 100-continue without the 100)
        self._early: deque[HttpResponse] = deque()
        self.stream = MessageStream("http", self._message, self._body_rule, self._lost)

    @property
    def done(self) -> bool:
        return self.stream.done

    @property
    def peer_acked(self) -> int | None:
        return self.stream.peer_acked

    @peer_acked.setter
    def peer_acked(self, value: int | None) -> None:
        self.stream.peer_acked = value

    # StreamSink
    def on_data(self, direction: int, data: bytes, ts: float, frame: int) -> None:
        self.stream.on_data(direction, data, ts, frame)

    def on_gap(self, direction: int, size: int, ts: float, frame: int) -> None:
        self.stream.on_gap(direction, size, ts, frame)

    def on_close(self, ts: float, frame: int, how: str) -> None:
        self.stream.on_close(ts, frame, how)
        while self.pending:
            self._flush_request(self.pending.popleft(), None, lost=False)

    # framing rules
    def _body_rule(self, direction: int, start: str, headers: Headers) -> int | str | None:
        te = (headers.get("Transfer-Encoding") or "").lower()
        if direction == 0:
            if "chunked" in te:
                return "chunked"
            return _content_length(headers)
        # response
        parts = start.split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError) as exc:
            raise MalformedError(f"bad status line {start[:40]!r}") from exc
        if 100 <= status < 200 or status in (204, 304):
            return 0
        req = self.pending[0] if self.pending else None
        method = req.method if req is not None else None
        if method is None and self.stream.readers[0].head is not None:  # answered before its body ended
            method = self.stream.readers[0].head[0].split(" ", 1)[0]
        if method == "HEAD" or (method == "CONNECT" and 200 <= status < 300):
            return 0
        if "chunked" in te:
            return "chunked"
        cl = _content_length(headers)
        if cl is None:
            return "close"
        return cl

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
        if direction == 0:
            parts = start.split(" ")
            if len(parts) < 2:
                raise MalformedError("bad request line")
            method, target = parts[0], parts[1]
            version = parts[2] if len(parts) > 2 else "HTTP/0.9"
            req = HttpRequest(
                method=method,
                target=target,
                version=version,
                headers=headers,
                body=decode_body(body, headers),
                body_size=body_size,
                first_frame=first[0],
                first_ts=first[1],
                frame=last[0],
                ts=last[1],
                truncated=truncated,
                peer_acked=self.stream.readers[0].head_acked,
            )
            if self._early and not self.pending:
                self._flush_request(req, self._early.popleft(), lost=False)
                return
            self.pending.append(req)
            return
        parts = start.split(" ", 2)
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            self._interim.append(status)
            return
        resp = HttpResponse(
            status=status,
            reason=parts[2] if len(parts) > 2 else "",
            version=parts[0],
            headers=headers,
            body=decode_body(body, headers),
            body_size=body_size,
            first_frame=first[0],
            first_ts=first[1],
            frame=last[0],
            ts=last[1],
            truncated=truncated,
            interim=self._interim,
            offset=self.stream.readers[1].head_offset,
        )
        self._interim = []
        if not self.pending:
            if self.stream.readers[0].head is not None:
                self._early.append(resp)  # its request's head is here, its body still coming
            return  # else: a response whose request we never saw (capture started mid-stream)
        if self._gap_seen and len(self.pending) > 1:
            # After a capture gap, a response that starts exactly where a waiting request had
            # acknowledged the server's bytes answers that request; older ones lost their answers.
            for i, req in enumerate(self.pending):
                if req.peer_acked is not None and req.peer_acked == resp.offset:
                    for _ in range(i):
                        self._flush_request(self.pending.popleft(), None, lost=True)
                    break
        self._flush_request(self.pending.popleft(), resp, lost=False)
        if not self.pending:
            self._gap_seen = False

    def _lost(self, direction: int, answered: bool) -> None:
        # Bytes of the server's direction went missing.  Unless the answer in progress was already
        # emitted (its head had arrived), they most likely held the answer to the oldest waiting
        # request: give that request up so later answers pair correctly.
        if direction != 1 or not self.pending:
            return
        self._gap_seen = True
        if not answered:
            self._flush_request(self.pending.popleft(), None, lost=True)

    def _flush_request(self, req: HttpRequest, resp: HttpResponse | None, *, lost: bool) -> None:
        ex = HttpExchange(request=req, response=resp, index=self.count, response_lost=lost)
        self.count += 1
        self.on_exchange(ex)


def _content_length(headers: Headers) -> int | None:
    v = headers.get("Content-Length")
    if v is None:
        return None
    try:
        n = int(v.split(",")[0].strip())
    except ValueError as exc:
        raise MalformedError("bad Content-Length") from exc
    if n < 0:
        raise MalformedError("negative Content-Length")
    return n


def parse_query(query: str) -> dict[str, str]:
    """Form/query decoding (first value wins), tolerant of junk."""
    if not query:
        return {}
    out: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True, max_num_fields=200):
        out.setdefault(k, v)
    return out


def describe(ex: HttpExchange) -> dict[str, Any]:
    """A compact, secret-free summary of an exchange (for debugging and evidence)."""
    r = ex.request
    return {
        "method": r.method,
        "host": r.host,
        "path": r.path,
        "status": ex.response.status if ex.response else None,
    }
