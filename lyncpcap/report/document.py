"""The CONTRACT JSON document (`schema` 1) built from an analysis, with secrets redacted by default."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lyncpcap import __version__
from lyncpcap.model import AuthExchange, Finding, Session, Step
from lyncpcap.secrets import redact_url, render

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis

SCHEMA = 1


_last_second: tuple[float, str] = (math.nan, "")  # the whole second formatted last, and its text


def iso(ts: float) -> str:
    """`ts` as `2014-02-20T11:30:05.123456Z`: datetime.fromtimestamp's text (microseconds rounded
    half to even), with the date and time of the second kept from the call before: a document's
    timestamps come in runs of the same second, and this is called for every step and session."""
    global _last_second
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1.0
        us -= 1_000_000
    elif us < 0:
        whole -= 1.0
        us += 1_000_000
    last = _last_second  # one tuple, read and replaced whole: safe with threads
    if last[0] != whole:
        last = _last_second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{last[1]}{us:06d}Z"


def step_record(s: Step, reveal: bool = False) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "step": s.step,
        "time": iso(s.time),
        "frame": s.frame,
        "src": s.src,
        "dst": s.dst,
        "method": s.method,
        "url": redact_url(s.url, reveal),
        "status": s.status,
        "auth": s.auth,
        "duration_s": round(s.duration, 6),
        "detail": s.detail,
        "result": s.result,
        "client": s.client,
        "session": s.session,
    }
    if "capture" in s.facts:
        rec["capture"] = s.facts["capture"]
    if s.failure_reason:
        rec["failure_reason"] = s.failure_reason
        rec["failure_evidence"] = s.failure_evidence
    secrets = s.facts.get("secrets")
    if secrets:  # redacted, each value keeps a fingerprint so repeated use can be matched
        rec["secrets"] = render(list(secrets), reveal)
    return rec


def session_record(s: Session, reveal: bool = False) -> dict[str, Any]:
    return {
        "id": s.id,
        "client": {
            "address": s.client_address,
            "user_agent": s.user_agent,
            "kind": s.client_kind,
            "location": s.location,
            "location_evidence": s.location_evidence,
        },
        "user": s.user,
        "identities": s.identities,
        "auth_protocol": s.auth_protocol,
        "outcome": s.outcome,
        "failure": s.failure,
        "start": iso(s.start),
        "end": iso(s.end),
        "duration_s": round(s.duration, 6),
        "steps": [step_record(st, reveal) for st in s.steps],
    }


def auth_record(a: AuthExchange, session: str | None) -> dict[str, Any]:
    return {
        "time": iso(a.time),
        "frame": a.frame,
        "transport": a.transport,
        "protocol": a.protocol,
        "message": a.message,
        "src": a.src,
        "dst": a.dst,
        "user": a.user,
        "domain": a.domain,
        "workstation": a.workstation,
        "ntlm_version": a.ntlm_version,
        "realm": a.realm,
        "spn": a.spn,
        "error_code": a.error_code,
        "target_name": a.target_name,
        "session": session,
    }


def finding_record(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "severity": f.severity,
        "title": f.title,
        "detail": f.detail,
        "sessions": list(f.sessions),
        "evidence": list(f.evidence),
        "advice": f.advice,
    }


def document(analysis: Analysis, *, reveal: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "tool": {"name": "lyncpcap", "version": __version__},
        "captures": [c.as_dict() for c in analysis.captures],
        "sessions": [session_record(s, reveal) for s in analysis.session_list],
        "auth": [auth_record(a, analysis.session_of_auth(a)) for a in analysis.auth_list],
        "clients": analysis.client_rows(),
        "findings": [finding_record(f) for f in analysis.finding_list],
        "unattached_steps": [step_record(s, reveal) for s in analysis.step_list if s.session is None],
        "tls": [t.as_dict() for t in analysis.tls_list],
    }
    return doc
