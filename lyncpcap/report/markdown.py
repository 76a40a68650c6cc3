"""Markdown reports for tickets and chat: the overview, the per-client table, sessions, findings,
and the step timeline (with a Mermaid diagram) of every session that did not succeed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lyncpcap import __version__
from lyncpcap.model import Session
from lyncpcap.report import mermaid, view

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def text(value: object) -> str:
    """Capture text as inert Markdown (one line, every markup character escaped)."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def code(value: object) -> str:
    """Inline code that survives backticks in the value and pipes inside table cells."""
    raw = " ".join(str(value).split())
    longest = max((len(run) for run in re.findall(r"`+", raw)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") else ""
    return f"{fence}{pad}{raw.replace('|', chr(92) + '|')}{pad}{fence}" if raw else ""


def block(value: str, lang: str = "") -> str:
    """A fenced block that no backtick run inside `value` can close early."""
    longest = max((len(run) for run in re.findall(r"`{3,}", value)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{value.rstrip()}\n{fence}"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub-flavoured table; `align` is one letter per column (l, r)."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _outcome(outcome: str) -> str:
    return f"**{outcome}**" if outcome == "failure" else outcome


def overview(analysis: Analysis) -> str:
    rows = []
    warnings = []
    for c in analysis.captures:
        rows.append([code(c.path), c.format + (" (gzip)" if c.compressed else ""), f"{c.packets:,}",
                     "yes" if c.decrypted else "no", str(len(c.warnings))])
        warnings += [f"- ⚠ {code(c.path)}: {text(w)}" for w in c.warnings]
    counts = view.outcome_counts(analysis.session_list)
    summary = (f"**{len(analysis.session_list)} sign-in session(s): {counts['success']} succeeded, "
               f"{counts['failure']} failed, {counts['incomplete']} incomplete; "
               f"{len(analysis.finding_list)} finding(s).**")
    parts = ["## What was read", table(["Capture", "Format", "Packets", "Decrypted", "Warnings"], rows, "llrlr")]
    if warnings:
        parts.append("\n".join(warnings))
    parts.append(summary)
    return "\n\n".join(parts)


def clients(analysis: Analysis) -> str:
    rows = [
        [text(r.client), text(r.protocols), str(r.sessions), str(r.succeeded), str(r.failed), view.ms(r.median_s)]
        for r in view.client_rows(analysis)
    ]
    body = (table(["Client", "Authentication protocol", "Sessions", "Succeeded", "Failed", "Median time"], rows,
                  "llrrrr") if rows else "_No sign-in sessions._")
    return "## Clients and authentication protocols\n\n" + body


def sessions(analysis: Analysis) -> str:
    rows = [
        [s.id, view.clock(s.start), text(s.client_kind), s.location, code(s.client_address), text(view.user_text(s)),
         text(view.protocol_label(s.auth_protocol)), _outcome(s.outcome), view.ms(s.duration), str(len(s.steps)),
         text(view.failure_text(s))]
        for s in analysis.session_list
    ]
    header = ["ID", "Start (UTC)", "Client", "Location", "Address", "User", "Auth", "Outcome", "Duration", "Steps",
              "Failure"]
    body = table(header, rows, "llllllllrrl") if rows else "_No sign-in sessions found._"
    return "## Sessions\n\n" + body


def session_markdown(session: Session, reveal: bool = False, *, level: int = 3, diagram: bool = True) -> str:
    """One session: heading, step timeline (failures bold), the server's diagnostic, Mermaid."""
    h = "#" * level
    heading = (f"{h} {session.id} — {text(view.user_text(session))}, "
               f"{text(view.client_label(session.client_kind, session.location))}, "
               f"{text(view.protocol_label(session.auth_protocol))}: {session.outcome}")
    facts = (f"Client {code(session.client_address)}"
             + (f", user agent {code(session.user_agent)}" if session.user_agent else "")
             + f"; started {view.stamp(session.start)}, took {view.ms(session.duration)}.")
    rows = []
    for i, (st, state) in enumerate(zip(session.steps, view.step_states(session), strict=True), 1):
        target = view.safe_url(st.url, reveal) or ""
        detail = text(st.failure_reason or st.detail or "")
        cells = [str(i), view.offset(st.time - session.start), view.ms(st.duration), st.step,
                 code(f"{st.method or ''} {target}".strip()), text(view.status_text(st)),
                 text(view.protocol_label(st.auth)), str(st.frame), detail]
        if state == "fatal":
            cells = [cells[0], *(f"**{c}**" if c and not c.startswith("`") else c for c in cells[1:])]
            cells[3] = "**✖ " + st.step + "**"
        elif state == "refused":
            cells[3] = "! " + st.step
        rows.append(cells)
    parts = [heading, facts]
    if rows:
        parts.append(table(["#", "Time", "Duration", "Step", "Request", "Status", "Auth", "Frame", "Detail"], rows,
                           "rrrllllrl"))
    else:
        parts.append("_No steps._")
    if session.failure:
        parts.append(f"**✖ Failed at {text(session.failure.get('step', '?'))}:** "
                     f"{text(session.failure.get('reason', ''))}")
        if session.failure.get("evidence"):
            parts.append("Server's diagnostic, verbatim:\n\n" + block(session.failure["evidence"]))
    if diagram and session.steps:
        parts.append(block(mermaid.sequence_diagram(session, reveal), "mermaid"))
    return "\n\n".join(parts)


def findings(analysis: Analysis) -> str:
    if not analysis.finding_list:
        return "## Findings\n\n_No findings._"
    parts = ["## Findings"]
    for f in analysis.finding_list:
        lines = [f"### {f.severity.upper()}: {text(f.title)} ({code(f.id)})", "", text(f.detail), ""]
        if f.sessions:
            lines.append(f"Sessions: {', '.join(f.sessions)}")
            lines.append("")
        if f.evidence:
            lines += [f"- {text(e)}" for e in f.evidence]
            lines.append("")
        if f.advice:
            lines.append(f"**Advice:** {text(f.advice)}")
        parts.append("\n".join(lines).rstrip())
    return "\n\n".join(parts)


def secrets(analysis: Analysis, reveal: bool = False) -> str:
    """Credentials and tokens the steps carried: a fingerprint table, or verbatim blocks when revealed."""
    seen = view.secrets_seen(analysis.step_list)
    title = "## Credentials and tokens on the wire"
    if not seen:
        return f"{title}\n\n_None seen (or none decrypted)._"
    if not reveal:
        rows = [[x.session or "—", x.step, str(x.frame), text(x.secret.kind), code(x.text(False))] for x in seen]
        return (f"{title}\n\nShown as fingerprints: the same fingerprint twice is the same value.\n\n"
                + table(["Session", "Step", "Frame", "Kind", "Value"], rows, "llrll"))
    parts = [title, "**Revealed with --reveal-secrets: handle this text like the passwords it contains.**"]
    for x in seen:
        parts.append(f"- {x.session or '—'} {x.step}, frame {x.frame}, {text(x.secret.kind)}:\n\n"
                     + "\n".join("  " + line for line in block(x.text(True)).split("\n")))
    return "\n\n".join(parts)


def report(analysis: Analysis, reveal: bool = False) -> str:
    """The whole analysis as one Markdown document."""
    names = ", ".join(code(c.path) for c in analysis.captures)
    parts = [
        "# Lync / Skype for Business sign-in report",
        f"Made by lyncpcap {__version__} from {names}.",
        overview(analysis),
        clients(analysis),
        sessions(analysis),
    ]
    unsuccessful = [s for s in analysis.session_list if s.outcome != "success"]
    if unsuccessful:
        parts.append("## Sessions that did not succeed")
        parts += [session_markdown(s, reveal) for s in unsuccessful]
    parts.append(findings(analysis))
    parts.append(secrets(analysis, reveal))
    return "\n\n".join(parts) + "\n"
