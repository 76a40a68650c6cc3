"""Typed pandas DataFrames of an analysis: one column→dtype map per table (zat-style).

Step and protocol columns are categories with the CONTRACT values; times are timezone-aware UTC;
counts are nullable integers.  Secret values never reach a DataFrame (only their redacted form).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from lyncpcap.model import (
    AUTH_MESSAGES,
    AUTH_PROTOCOLS,
    LOCATIONS,
    OUTCOMES,
    RESULTS,
    SEVERITIES,
    STEPS,
    Step,
)
from lyncpcap.secrets import redact_url

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis

STEP_DTYPES: dict[str, Any] = {
    "session": "string",
    "step": pd.CategoricalDtype(list(STEPS)),
    "time": "datetime64[ns, UTC]",
    "duration_s": "float64",
    "frame": "Int64",
    "src": "string",
    "dst": "string",
    "client": "string",
    "method": "string",
    "url": "string",
    "status": "string",
    "auth": pd.CategoricalDtype(list(AUTH_PROTOCOLS)),
    "result": pd.CategoricalDtype(list(RESULTS)),
    "detail": "string",
    "failure_reason": "string",
    "conn": "Int64",
    "transport": "category",
}
SESSION_DTYPES: dict[str, Any] = {
    "id": "string",
    "client_address": "string",
    "client_kind": "category",
    "location": pd.CategoricalDtype(list(LOCATIONS)),
    "user": "string",
    "user_agent": "string",
    "auth_protocol": pd.CategoricalDtype(list(AUTH_PROTOCOLS)),
    "outcome": pd.CategoricalDtype(list(OUTCOMES)),
    "failure_step": pd.CategoricalDtype(list(STEPS)),
    "failure_reason": "string",
    "failure_evidence": "string",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
    "duration_s": "float64",
    "steps": "Int64",
}
AUTH_DTYPES: dict[str, Any] = {
    "time": "datetime64[ns, UTC]",
    "frame": "Int64",
    "transport": pd.CategoricalDtype(list(("http", "sip", "kdc"))),
    "protocol": pd.CategoricalDtype(list(("ntlm", "kerberos"))),
    "message": pd.CategoricalDtype(list(AUTH_MESSAGES)),
    "src": "string",
    "dst": "string",
    "user": "string",
    "domain": "string",
    "workstation": "string",
    "ntlm_version": "category",
    "realm": "string",
    "spn": "string",
    "error_code": "Int64",
    "session": "string",
}
CLIENT_DTYPES: dict[str, Any] = {
    "kind": "category",
    "location": pd.CategoricalDtype(list(LOCATIONS)),
    "auth_protocols": "string",
    "sessions": "Int64",
    "succeeded": "Int64",
    "failed": "Int64",
    "median_duration_s": "float64",
}
FINDING_DTYPES: dict[str, Any] = {
    "id": "category",
    "severity": pd.CategoricalDtype(list(SEVERITIES), ordered=True),
    "title": "string",
    "detail": "string",
    "sessions": "string",
    "advice": "string",
}


def _frame(rows: list[dict[str, Any]], dtypes: dict[str, Any]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(dtypes))
    for col, dt in dtypes.items():
        if str(dt).startswith("datetime64"):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
        else:
            df[col] = df[col].astype(dt)
    return df


def steps_frame(steps: list[Step], reveal: bool = False) -> pd.DataFrame:
    rows = [
        {
            "session": s.session,
            "step": s.step,
            "time": s.time,
            "duration_s": s.duration,
            "frame": s.frame,
            "src": s.src,
            "dst": s.dst,
            "client": s.client,
            "method": s.method,
            "url": redact_url(s.url, reveal),
            "status": None if s.status is None else str(s.status),
            "auth": s.auth,
            "result": s.result,
            "detail": s.detail,
            "failure_reason": s.failure_reason,
            "conn": s.conn,
            "transport": s.transport,
        }
        for s in steps
    ]
    return _frame(rows, STEP_DTYPES)


def sessions_frame(a: Analysis) -> pd.DataFrame:
    rows = []
    for s in a.session_list:
        rows.append(
            {
                "id": s.id,
                "client_address": s.client_address,
                "client_kind": s.client_kind,
                "location": s.location,
                "user": s.user,
                "user_agent": s.user_agent,
                "auth_protocol": s.auth_protocol,
                "outcome": s.outcome,
                "failure_step": s.failure["step"] if s.failure else None,
                "failure_reason": s.failure["reason"] if s.failure else None,
                "failure_evidence": s.failure["evidence"] if s.failure else None,
                "start": s.start,
                "end": s.end,
                "duration_s": s.duration,
                "steps": len(s.steps),
            }
        )
    return _frame(rows, SESSION_DTYPES).set_index("id", drop=False)


def auth_frame(a: Analysis) -> pd.DataFrame:
    rows = [
        {
            "time": x.time,
            "frame": x.frame,
            "transport": x.transport,
            "protocol": x.protocol,
            "message": x.message,
            "src": x.src,
            "dst": x.dst,
            "user": x.user,
            "domain": x.domain,
            "workstation": x.workstation,
            "ntlm_version": x.ntlm_version,
            "realm": x.realm,
            "spn": x.spn,
            "error_code": x.error_code,
            "session": a.session_of_auth(x),
        }
        for x in a.auth_list
    ]
    return _frame(rows, AUTH_DTYPES)


def clients_frame(a: Analysis) -> pd.DataFrame:
    rows = [dict(r, auth_protocols=", ".join(r["auth_protocols"])) for r in a.client_rows()]  # type: ignore[arg-type]
    return _frame(rows, CLIENT_DTYPES)


def findings_frame(a: Analysis) -> pd.DataFrame:
    rows = [
        {
            "id": f.id,
            "severity": f.severity,
            "title": f.title,
            "detail": f.detail,
            "sessions": ", ".join(f.sessions),
            "advice": f.advice,
        }
        for f in a.finding_list
    ]
    return _frame(rows, FINDING_DTYPES)


TLS_DTYPES: dict[str, Any] = {
    "conn": "Int64",
    "client": "string",
    "client_port": "Int64",
    "server": "string",
    "server_port": "Int64",
    "first_frame": "Int64",
    "sni": "string",
    "version": "string",
    "cipher": "string",
    "decrypted": "boolean",
    "reason": "string",
}


def tls_frame(a: Analysis) -> pd.DataFrame:
    return _frame([t.as_dict() for t in a.tls_list], TLS_DTYPES)
