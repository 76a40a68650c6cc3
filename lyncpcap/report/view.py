"""What every report shows the same way: labels, colours, safe URLs, relative times, client rows.

Terminal, HTML, Markdown, Mermaid and the plots all take their words and colours from here, so a
`webticket` step is the same colour in a timeline PNG as in the HTML table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lyncpcap.model import Session, Step
from lyncpcap.secrets import Secret, redact_url

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis

#: Protocol names as support engineers write them (the seed's "Authentication protocol" column).
PROTOCOL_LABELS: dict[str, str] = {
    "kerberos": "Kerberos",
    "ntlm": "NTLM",
    "soap": "SOAP",
    "password": "OAuth password",
    "anonymous": "SOAP (Anonymous)",
    "passive": "Passive (AD FS)",
    "certificate": "Certificate",
    "tls-dsk": "TLS-DSK",
    "digest": "Digest",
    "unknown": "unknown",
}

#: One colour per step, shared by the plots and the HTML (colour-blind-safe tab10 order).
STEP_COLOURS: dict[str, str] = {
    "dns": "#7f7f7f",
    "autodiscover": "#1f77b4",
    "mex": "#17becf",
    "webticket": "#ff7f0e",
    "oauth": "#bcbd22",
    "adfs": "#9467bd",
    "certprov": "#8c564b",
    "kerberos": "#2ca02c",
    "sip-register": "#e377c2",
    "ucwa": "#393b79",
    "other": "#c7c7c7",
}

OUTCOME_COLOURS: dict[str, str] = {"success": "#1a7f37", "failure": "#cf222e", "incomplete": "#9a6700"}
FAILURE_COLOUR = "#cf222e"
#: a step that was refused while the session went on (a retry, a fallback)
REFUSED_COLOUR = "#bc4c00"
STATE_COLOURS: dict[str, str] = {"fatal": FAILURE_COLOUR, "refused": REFUSED_COLOUR, "ok": "#1f2328"}
SEVERITY_COLOURS: dict[str, str] = {"high": "#cf222e", "medium": "#bc4c00", "low": "#9a6700", "info": "#57606a"}
#: rich styles for the terminal
OUTCOME_STYLES: dict[str, str] = {"success": "green", "failure": "bold red", "incomplete": "yellow"}
SEVERITY_STYLES: dict[str, str] = {"high": "bold red", "medium": "dark_orange", "low": "yellow", "info": "dim"}

def safe_url(url: str | None, reveal: bool = False) -> str | None:
    """The URL as outputs show it (query values redacted unless `reveal`): see secrets.redact_url."""
    return redact_url(url, reveal)


def url_path(url: str | None) -> str:
    """Path of an HTTP URL without scheme, host or query; SIP and DNS targets as they are; a
    connection's (tcp://, tls://) host and port, all it names."""
    if not url:
        return ""
    if "://" not in url:
        return url
    split = urlsplit(url)
    if split.scheme in ("tcp", "tls"):
        return split.netloc
    return (split.path or "/") + ("?…" if split.query else "")


def url_host(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    return urlsplit(url).hostname


def url_target(url: str) -> str:
    """What follows an absolute URL's host: its port, if given, and `/path?query` ("/" if nothing
    follows); the URL itself if it is not absolute."""
    start = url.find("://")
    if start < 0:
        return url
    ends = [i for i in (url.find(c, start + 3) for c in "/?#") if i >= 0]
    end = min(ends) if ends else len(url)
    host_port = url[start + 3 : end].rpartition("@")[2]
    colon = host_port.rfind(":")
    port = host_port[colon:] if colon > host_port.rfind("]") else ""
    return port + url[end:] if port or end < len(url) else "/"


def truncate(text: str, width: int) -> str:
    """Shorten to `width` characters, keeping the end of a path (the telling part) when possible."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return text[: width - 1] + "…"


def truncate_path(path: str, width: int) -> str:
    """`/WebTicket/WebTicketService.svc/mex` → `/…/WebTicketService.svc/mex`: keep the last segments."""
    if len(path) <= width:
        return path
    segments = path.split("/")
    tail = segments[-1]
    for i in range(len(segments) - 2, 0, -1):
        candidate = "/".join(segments[i:])
        if len(candidate) + 3 > width:
            break
        tail = candidate
    short = "/…/" + tail if not tail.startswith("/") else "/…" + tail
    return short if len(short) <= width else truncate(path, width)


def status_text(step: Step) -> str:
    return "—" if step.status is None else str(step.status)


def request_text(step: Step, width: int = 60) -> str:
    """`METHOD /path` (HTTP), `REGISTER sip:contoso.com` (SIP), `A lyncdiscover.contoso.com` (DNS)."""
    method = step.method or ""
    target = url_path(step.url)
    room = max(4, width - len(method) - 1)
    target = truncate_path(target, room) if target.startswith("/") else truncate(target, room)
    return f"{method} {target}".strip()


def arrow_label(step: Step, width: int = 60) -> str:
    """`METHOD /path → status`, shortened to `width` characters (the status always survives)."""
    status = truncate(status_text(step), max(6, width // 2))
    tail = f" → {status}"
    return request_text(step, max(8, width - len(tail))) + tail


def ms(seconds: float) -> str:
    """A duration in milliseconds (`59 ms`); from ten seconds on in seconds (`90.6 s`)."""
    if seconds < 10:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def offset(seconds: float) -> str:
    """A time relative to the session start: `+0.000 s`, `+1.204 s`, `+90.6 s`."""
    if seconds < 100:
        return f"+{seconds:.3f} s"
    return f"+{seconds:.1f} s"


def clock(ts: float) -> str:
    """Wall-clock UTC time of day with milliseconds, for tables (`08:12:05.124`)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def stamp(ts: float) -> str:
    """Date and UTC time, for headings (`2014-02-20 08:12:05 UTC`)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def protocol_label(protocol: str | None) -> str:
    if protocol is None:
        return ""
    return PROTOCOL_LABELS.get(protocol, protocol)


def client_label(kind: str, location: str) -> str:
    """`Lync 2013 desktop (external network)`, as the seed table names its rows."""
    if location in ("internal", "external"):
        return f"{kind} ({location} network)"
    return f"{kind} (location unknown)"


def user_text(session: Session) -> str:
    return session.user or "(no identity seen)"


def failure_text(session: Session) -> str:
    """`webticket: NTLM credentials refused: …` (the step is left out when the reason names it)."""
    if not session.failure:
        return ""
    step = session.failure.get("step", "?")
    reason = session.failure.get("reason", "")
    if reason.lower().startswith(step.lower()):
        return reason
    return f"{step}: {reason}"


def failed_step(session: Session) -> Step | None:
    """The step the session failed at: the last failed step named by `Session.failure`."""
    if not session.failure:
        return None
    failing = [s for s in session.steps if s.result == "failure" or s.failure_reason]
    wanted = session.failure.get("step")
    same = [s for s in failing if s.step == wanted]
    if same:
        return same[-1]
    if failing:
        return failing[-1]
    named = [s for s in session.steps if s.step == wanted]
    return named[-1] if named else None


def is_failure(step: Step) -> bool:
    return step.result == "failure" or bool(step.failure_reason)


def step_states(session: Session) -> list[str]:
    """Per step: `fatal` (the session failed here), `refused` (failed, but the session went on,
    e.g. NXDOMAIN for lyncdiscoverinternal outside the network) or `ok`."""
    fatal = failed_step(session)
    return ["fatal" if st is fatal else "refused" if is_failure(st) else "ok" for st in session.steps]


@dataclass(frozen=True, slots=True)
class ClientRow:
    """A row of the seed's "Client / Authentication protocol" table, with outcome counts."""

    client: str
    kind: str
    location: str
    protocols: str
    sessions: int
    succeeded: int
    failed: int
    median_s: float


def client_rows(analysis: Analysis) -> list[ClientRow]:
    return client_rows_from(analysis.client_rows())


def client_rows_from(summary: Iterable[dict[str, Any]]) -> list[ClientRow]:
    """CONTRACT CLIENT_SUMMARY records (`sessions.client_summary`) as display rows."""
    rows = []
    for r in summary:
        protos: Iterable[Any] = r["auth_protocols"]
        rows.append(
            ClientRow(
                client=client_label(str(r["kind"]), str(r["location"])),
                kind=str(r["kind"]),
                location=str(r["location"]),
                protocols=", ".join(protocol_label(str(p)) for p in protos),
                sessions=int(r["sessions"]),
                succeeded=int(r["succeeded"]),
                failed=int(r["failed"]),
                median_s=float(r["median_duration_s"]),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class SecretSeen:
    """A credential, token or ticket a step carried (`Step.facts["secrets"]`)."""

    session: str | None
    step: str
    frame: int
    secret: Secret

    def text(self, reveal: bool) -> str:
        return self.secret.render(reveal)


def secrets_seen(steps: Iterable[Step]) -> list[SecretSeen]:
    """Every secret the steps carried, in step order; shown redacted unless the user reveals them."""
    out = []
    for st in steps:
        for item in st.facts.get("secrets") or ():
            if isinstance(item, Secret):
                out.append(SecretSeen(st.session, st.step, st.frame, item))
    return out


def outcome_counts(sessions: list[Session]) -> dict[str, int]:
    counts = {"success": 0, "failure": 0, "incomplete": 0}
    for s in sessions:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    return counts


# -- the participants of a session (ladder diagram, Mermaid) --------------------------------------

#: Lane roles in the order a ladder draws them, left to right.
ROLE_ORDER: tuple[str, ...] = (
    "Client",
    "Reverse proxy",
    "Edge",
    "DNS resolver",
    "Front end",
    "Registrar",
    "Web server",
    "AD FS",
    "KDC",
    "Host",
)
#: The role of the server a step talks to, by step name (HTTP steps go by host, SIP by path).
_SERVER_ROLE_BY_STEP: dict[str, str] = {"dns": "DNS resolver", "kerberos": "KDC"}


@dataclass(slots=True)
class Lane:
    key: str  # the address the lane stands for
    roles: list[str]
    names: Counter[str]  # host names seen for it (HTTP Host), most used first

    @property
    def role(self) -> str:
        ordered = sorted(set(self.roles), key=ROLE_ORDER.index)
        return " / ".join(ordered) if ordered else "Host"

    @property
    def rank(self) -> int:
        return min((ROLE_ORDER.index(r) for r in self.roles), default=len(ROLE_ORDER))

    @property
    def name(self) -> str | None:
        """The host name used most for this lane, with a count of the others."""
        if not self.names:
            return None
        top = self.names.most_common(1)[0][0]
        return top if len(self.names) == 1 else f"{top} (+{len(self.names) - 1})"


@dataclass(frozen=True, slots=True)
class Message:
    """One arrow of a sequence: `src` lane → `dst` lane, with the observed step."""

    step: Step
    src: str
    dst: str
    via: str | None  # the client lane when a reverse proxy or Edge relayed the request
    offset_s: float


def _server_role(step: Step, relayed: bool, location: str) -> str:
    if step.step in _SERVER_ROLE_BY_STEP:
        return _SERVER_ROLE_BY_STEP[step.step]
    if step.step == "sip-register":
        # an Edge relays external clients' SIP to the registrar; a client outside talks to the Edge
        return "Registrar" if relayed or location != "external" else "Edge"
    path = url_path(step.url).lower()
    host = (url_host(step.url) or str(step.facts.get("host") or "")).lower()
    if step.step == "adfs" and (path.startswith("/adfs/") or host.startswith(("adfs", "sts", "fs."))):
        return "AD FS"
    if step.facts.get("lync") or step.step in {"autodiscover", "mex", "webticket", "oauth", "certprov", "ucwa", "adfs"}:
        return "Front end"
    return "Web server"


def sequence(session: Session) -> tuple[list[Lane], list[Message]]:
    """Lanes (client, reverse proxy, servers by role) and one message per step of `session`.

    Roles come from the steps: a request with X-Forwarded-For came through a reverse proxy, SIP
    from another address than the client's came through an Edge, DNS goes to a resolver,
    Kerberos to a KDC, AD FS pages to AD FS, Lync web services to a front end.
    """
    lanes: dict[str, Lane] = {}

    def lane(key: str, role: str, name: str | None = None) -> None:
        item = lanes.setdefault(key, Lane(key, [], Counter()))
        if role not in item.roles:
            item.roles.append(role)
        if name:
            item.names[name] += 1

    client = session.client_address
    lane(client, "Client")
    messages: list[Message] = []
    for st in session.steps:
        relayed = st.src != client and st.client == client
        if relayed:
            lane(st.src, "Edge" if st.step == "sip-register" else "Reverse proxy")
        elif st.src != client:
            lane(st.src, "Host")
        role = _server_role(st, relayed, session.location)
        name = st.facts.get("host") or url_host(st.url) if st.step not in ("dns", "kerberos") else None
        lane(st.dst, role, str(name) if name else None)
        messages.append(Message(st, st.src, st.dst, client if relayed else None, max(0.0, st.time - session.start)))
    ordered = sorted(lanes.values(), key=lambda x: x.rank)  # stable: first appearance breaks ties
    return ordered, messages
