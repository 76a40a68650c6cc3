"""Compare an analysis with a sample capture's truth file (CONTRACT.md, "Truth files")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lyncpcap.analysis import Analysis


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def session_facts(s: Any) -> dict[str, Any]:
    return {
        "client": {"kind": s.client_kind, "location": s.location, "address": s.client_address},
        "user": s.user,
        "auth_protocol": s.auth_protocol,
        "outcome": s.outcome,
        "failure": {"step": s.failure["step"]} if s.failure else None,
        "steps": [{"step": st.step} for st in s.steps],
    }


def differences(analysis: Analysis, truth: dict[str, Any]) -> list[str]:
    """Human-readable differences; empty when the analysis matches the truth."""
    got = [session_facts(s) for s in analysis.session_list]
    want = truth["sessions"]
    problems: list[str] = []
    if len(got) != len(want):
        problems.append(f"{len(got)} sessions found, {len(want)} expected")
    unmatched = list(range(len(got)))
    for i, w in enumerate(want):
        # match on address + user, then compare every field
        cands = [j for j in unmatched if got[j]["client"]["address"] == w["client"]["address"] and got[j]["user"] == w["user"]]
        if not cands:
            problems.append(f"expected session {i} ({w['client']['address']} {w['user']}) not found")
            continue
        j = cands[0]
        unmatched.remove(j)
        g = got[j]
        for key in ("client", "user", "auth_protocol", "outcome", "failure"):
            if g[key] != w[key]:
                problems.append(f"session {i} ({w['user']}): {key} is {g[key]!r}, expected {w[key]!r}")
        gs = [x["step"] for x in g["steps"]]
        ws = [x["step"] for x in w["steps"]]
        if gs != ws:
            problems.append(f"session {i} ({w['user']}): steps\n   got      {gs}\n   expected {ws}")
    for j in unmatched:
        problems.append(f"unexpected session {got[j]['client']['address']} {got[j]['user']} {[x['step'] for x in got[j]['steps']]}")
    ids = {f.id for f in analysis.finding_list}
    missing = set(truth["findings"]) - ids
    if missing:
        problems.append(f"findings missing: {sorted(missing)} (raised: {sorted(ids)})")
    return problems
