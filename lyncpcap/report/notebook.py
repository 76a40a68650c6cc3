"""Jupyter faces of an analysis and a session (`_repr_mimebundle_`): a summary, never a dump.

`text/plain` is the terminal view; `text/html` uses inline styles only, because notebook front
ends drop `<style>` and `<script>` from outputs in different ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lyncpcap.model import Session
from lyncpcap.report import html, table, view

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis

_CELL = "border:1px solid #d0d7de;padding:2px 8px;text-align:left;vertical-align:top"
_NUM = _CELL.replace("text-align:left", "text-align:right")


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th style='{_NUM if i in numeric else _CELL}'>{html.e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td style='{_NUM if i in numeric else _CELL}'>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table style='border-collapse:collapse;margin:4px 0'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _outcome(outcome: str) -> str:
    return f"<b style='color:{view.OUTCOME_COLOURS.get(outcome, 'inherit')}'>{html.e(outcome)}</b>"


def analysis_html(analysis: Analysis) -> str:
    counts = view.outcome_counts(analysis.session_list)
    captures = ", ".join(html.e(c.path) for c in analysis.captures)
    parts = [
        f"<div><b>lyncpcap analysis</b> of {captures}: {len(analysis.session_list)} session(s), "
        f"{_outcome('success')} {counts['success']}, {_outcome('failure')} {counts['failure']}, "
        f"{_outcome('incomplete')} {counts['incomplete']}; {len(analysis.finding_list)} finding(s)</div>"
    ]
    rows = [[html.e(r.client), html.e(r.protocols), str(r.sessions), str(r.succeeded), str(r.failed),
             html.e(view.ms(r.median_s))] for r in view.client_rows(analysis)]
    if rows:
        parts.append(_table(["Client", "Authentication protocol", "Sessions", "Succeeded", "Failed", "Median time"],
                            rows, {2, 3, 4, 5}))
    srows = [[html.e(s.id), html.e(view.user_text(s)), html.e(view.client_label(s.client_kind, s.location)),
              html.e(view.protocol_label(s.auth_protocol)), _outcome(s.outcome), html.e(view.ms(s.duration)),
              html.e(view.failure_text(s))] for s in analysis.session_list]
    if srows:
        parts.append(_table(["ID", "User", "Client", "Auth", "Outcome", "Duration", "Failure"], srows, {5}))
    if analysis.finding_list:
        items = "".join(
            f"<li><b style='color:{view.SEVERITY_COLOURS.get(f.severity, 'inherit')}'>{html.e(f.severity)}</b> "
            f"{html.e(f.title)} <code>{html.e(f.id)}</code> ({html.e(', '.join(f.sessions) or '—')})</li>"
            for f in analysis.finding_list
        )
        parts.append(f"<ul style='margin:4px 0'>{items}</ul>")
    return "<div class='lyncpcap'>" + "".join(parts) + "</div>"


def analysis_bundle(analysis: Analysis) -> dict[str, str]:
    return {
        "text/plain": table.render_text(table.analysis_view(analysis)),
        "text/html": analysis_html(analysis),
    }


def session_html(session: Session) -> str:
    from lyncpcap.report import plots

    rows = []
    for i, (st, state) in enumerate(zip(session.steps, view.step_states(session), strict=True), 1):
        colour = view.STATE_COLOURS[state] if state != "ok" else "inherit"
        rows.append([str(i), html.e(view.offset(st.time - session.start)), html.e(view.ms(st.duration)),
                     f"<span style='color:{colour}'>{html.e(st.step)}</span>",
                     f"<span style='color:{colour}'>{html.e(view.arrow_label(st, 80))}</span>",
                     html.e(view.protocol_label(st.auth)), html.e(st.failure_reason or st.detail)])
    head = (f"<div><b>{html.e(session.id)}</b> {html.e(view.user_text(session))} · "
            f"{html.e(view.client_label(session.client_kind, session.location))} · "
            f"{html.e(view.protocol_label(session.auth_protocol))} · {_outcome(session.outcome)} · "
            f"{html.e(view.ms(session.duration))}</div>")
    failure = ""
    if session.failure:
        failure = (f"<div style='color:{view.FAILURE_COLOUR}'>✖ failed at {html.e(view.failure_text(session))}</div>"
                   f"<pre style='white-space:pre-wrap'>{html.e(session.failure.get('evidence') or '')}</pre>")
    picture = ""
    if session.steps:
        picture = f"<img style='max-width:100%' alt='timeline' src='{html.png_data_uri(plots.session_figure(session))}'>"
    steps = _table(["#", "Time", "Duration", "Step", "Request → status", "Auth", "Detail"], rows, {0, 1, 2})
    return "<div class='lyncpcap'>" + head + failure + picture + steps + "</div>"


def session_bundle(session: Session) -> dict[str, str]:
    return {
        "text/plain": table.render_text(table.timeline_table(session)),
        "text/html": session_html(session),
    }
