"""The records that flow through lyncpcap, and the names the output contract fixes.

Decoders produce exchanges (one request with its answer), classifiers turn them into `Step`s and
`AuthExchange`s, and `sessions.py` groups steps into `Session`s.  Names follow shared CONTRACT.md.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

_T = TypeVar("_T")

STEPS: tuple[str, ...] = (
    "dns",
    "autodiscover",
    "mex",
    "webticket",
    "oauth",
    "adfs",
    "certprov",
    "kerberos",
    "sip-register",
    "ucwa",
    "other",
)
AUTH_PROTOCOLS: tuple[str, ...] = (
    "kerberos",
    "ntlm",
    "soap",
    "password",
    "anonymous",
    "passive",
    "certificate",
    "tls-dsk",
    "digest",
    "unknown",
)
OUTCOMES: tuple[str, ...] = ("success", "failure", "incomplete")
LOCATIONS: tuple[str, ...] = ("internal", "external", "unknown")
SEVERITIES: tuple[str, ...] = ("high", "medium", "low", "info")
AUTH_MESSAGES: tuple[str, ...] = (
    "negotiate",
    "challenge",
    "authenticate",
    "as-req",
    "as-rep",
    "tgs-req",
    "tgs-rep",
    "ap-req",
    "ap-rep",
    "krb-error",
)
#: Credentials that belong to the user's domain account (the "domain credentials" of the seed text).
DOMAIN_CREDENTIALS: frozenset[str] = frozenset({"ntlm", "kerberos", "soap", "password"})

#: What a step achieved, as the classifier judges it from the answer.
#:   "challenge"  the server asked for (more) credentials: normal, not a failure
#:   "success"    credentials or the request were accepted
#:   "failure"    rejected after complete credentials, or an explicit error
#:   "info"       an answer that neither grants nor refuses (discovery, metadata)
#:   "none"       no answer seen
RESULTS: tuple[str, ...] = ("challenge", "success", "failure", "info", "none")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One observed fact that helps group steps and label the session."""

    kind: str  # "user" (credential identity), "sip_uri", "upn", "location", "user_agent", "client_kind", ...
    value: str
    source: str  # where it was seen, e.g. "NTLM AUTHENTICATE", "AccessLocation"


@dataclass(frozen=True, slots=True)
class AuthExchange:
    """An authentication message seen on the wire, Lync or not (CONTRACT AUTH_EXCHANGE)."""

    time: float
    frame: int
    transport: str  # "http", "sip", "kdc"
    protocol: str  # "ntlm", "kerberos"
    message: str
    src: str = ""
    dst: str = ""
    user: str | None = None
    domain: str | None = None
    workstation: str | None = None
    ntlm_version: str | None = None
    realm: str | None = None
    spn: str | None = None
    error_code: int | None = None
    cname: str | None = None
    target_name: str | None = None
    conn: int | None = None
    step_index: int | None = None  # index of the step that carried it, for session linking


@dataclass(slots=True)
class Step:
    """One request of a sign-in (an HTTP request, a SIP transaction, a DNS query, a KDC exchange)."""

    step: str
    time: float
    end: float
    frame: int
    src: str
    dst: str
    method: str | None
    url: str | None
    status: int | str | None
    auth: str | None
    detail: str
    result: str = "info"
    client: str = ""  # the client's address as the session sees it (X-Forwarded-For when present)
    client_port: int | None = None
    server_port: int | None = None
    conn: int | None = None  # TCP connection index (tcp.stream) or None for UDP
    transport: str = "tcp"
    evidence: list[Evidence] = field(default_factory=list)
    # Set when the step is a failure: (reason in plain words, the server's own diagnostic verbatim).
    failure_reason: str | None = None
    failure_evidence: str | None = None
    # Per-step facts used by findings and reports (never secrets).
    facts: dict[str, Any] = field(default_factory=dict)
    session: str | None = None
    credential: bool = False  # the request carried complete credentials (type-3, AP-REQ, password, ...)
    exchanges: list[AuthExchange] = field(default_factory=list)  # NTLM/Kerberos messages it carried

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.time)

    def evidence_of(self, kind: str) -> list[str]:
        return [e.value for e in self.evidence if e.kind == kind]


def pickled_by_fields(cls: type[_T]) -> type[_T]:
    """Pickle `cls` as a call of its constructor with its fields in order.  The pickling that
    dataclasses give slotted classes looks every field up on each object, which made unpickling
    the steps a parallel run's workers send the parent's largest cost."""
    get = operator.attrgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def __reduce__(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return cls, get(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


for _cls in (Evidence, AuthExchange, Step):
    pickled_by_fields(_cls)


@dataclass(slots=True)
class Session:
    """One sign-in attempt of one client, from discovery to the last step seen."""

    id: str
    client_address: str
    user_agent: str | None
    client_kind: str
    location: str
    location_evidence: list[str]
    user: str | None
    identities: dict[str, str]
    auth_protocol: str
    outcome: str
    failure: dict[str, str] | None
    start: float
    end: float
    steps: list[Step]

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: str
    title: str
    detail: str
    sessions: tuple[str, ...]
    evidence: tuple[str, ...]
    advice: str


@dataclass(slots=True)
class CaptureInfo:
    path: str
    format: str
    packets: int
    decrypted: bool
    warnings: list[str] = field(default_factory=list)
    compressed: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    #: the keys the capture was read with (the drill-down decrypts with the same ones)
    keylog: str | None = None
    rsa_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "packets": self.packets,
            "decrypted": self.decrypted,
            "warnings": list(self.warnings),
            "compressed": self.compressed,
        }
