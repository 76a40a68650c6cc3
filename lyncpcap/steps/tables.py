"""Data tables loaded from `lyncpcap/data/*.json`: user agents → client kinds, diagnostics → meaning.

Kept as data so support engineers can extend them without touching code (STYLE.md, "Small things").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any


@cache
def _load(name: str) -> dict[str, Any]:
    with resources.files("lyncpcap.data").joinpath(name).open("r", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@dataclass(frozen=True, slots=True)
class ClientMatch:
    kind: str
    family: str  # desktop, mobile, web, phone, server, tool, browser


@cache
def _client_patterns() -> tuple[tuple[re.Pattern[str], ClientMatch], ...]:
    data = _load("clients.json")
    return tuple((re.compile(p["regex"]), ClientMatch(p["kind"], p["family"])) for p in data["patterns"])


#: distinct User-Agent strings whose client kind is remembered: a capture holds few, but a spraying
#: tool may send a new one with every request, and memory must not follow the capture
_USER_AGENTS_KEPT = 4096


@lru_cache(maxsize=_USER_AGENTS_KEPT)
def client_of(user_agent: str | None) -> ClientMatch | None:
    """The client kind a User-Agent string names, or None when the table does not know it."""
    if not user_agent:
        return None
    for rx, match in _client_patterns():
        if rx.search(user_agent):
            return match
    data = _load("clients.json")
    if re.search(data["browser_regex"], user_agent):
        return ClientMatch(data["browser_kind"], "browser")
    return None


def lwa_kind() -> str:
    return str(_load("clients.json")["lwa_kind"])


def sip_server(server_header: str | None) -> str | None:
    if not server_header:
        return None
    for entry in _load("clients.json")["sip_servers"]:
        if re.search(entry["regex"], server_header):
            return str(entry["server"])
    return None


def ms_diagnostic_meaning(error_id: int) -> str | None:
    data = _load("diagnostics.json")
    exact = data["ms_diagnostics"].get(str(error_id))
    if exact:
        return str(exact["meaning"])
    for rng in data["ms_diagnostics_ranges"]:
        if rng["from"] <= error_id <= rng["to"]:
            return str(rng["meaning"])
    return None


def web_diagnostic_meaning(error_id: int) -> str | None:
    entry = _load("diagnostics.json")["web_diagnostics"].get(str(error_id))
    return str(entry["meaning"]) if entry else None


def oauth_error_meaning(error: str) -> str | None:
    v = _load("diagnostics.json")["oauth_errors"].get(error)
    return str(v) if v else None


def kerberos_error_meaning(code: int) -> str | None:
    v = _load("diagnostics.json")["kerberos_errors"].get(str(code))
    return str(v) if v else None


def http_status_meaning(status: int) -> str | None:
    v = _load("diagnostics.json")["http_status"].get(str(status))
    return str(v) if v else None


_DIAG_ID = re.compile(r"^\s*(\d+)")


def diagnostic_id(value: str) -> int | None:
    """The numeric id at the start of an `ms-diagnostics` / `X-Ms-diagnostics` value."""
    m = _DIAG_ID.match(value)
    return int(m.group(1)) if m else None
