"""The terminal view (rich): what was read, the per-client summary, sessions, findings, timelines.

Every value from a capture goes into a `rich.text.Text`, never through markup, so a server's
diagnostic that happens to contain `[bold]` prints as it is.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from lyncpcap.model import Session
from lyncpcap.report import view

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis


def _title(text: str) -> Text:
    return Text(text, style="bold underline")


def captures_table(analysis: Analysis) -> RenderableType:
    table = Table(title=None, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Capture", overflow="fold")
    table.add_column("Format")
    table.add_column("Packets", justify="right")
    table.add_column("Decrypted")
    table.add_column("Warnings", justify="right")
    warnings: list[Text] = []
    for c in analysis.captures:
        fmt = c.format + (" (gzip)" if c.compressed else "")
        table.add_row(
            Text(c.path),
            fmt,
            f"{c.packets:,}",
            Text("yes", style="green") if c.decrypted else Text("no", style="dim"),
            Text(str(len(c.warnings)), style="yellow" if c.warnings else "dim"),
        )
        warnings.extend(Text(f"⚠ {c.path}: {w}", style="yellow") for w in c.warnings)
    return Group(table, *warnings)


def clients_table(analysis: Analysis) -> RenderableType:
    rows = view.client_rows(analysis)
    if not rows:
        return Text("No sign-in sessions, so no clients to summarise.", style="dim")
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Client", overflow="fold")
    table.add_column("Authentication protocol", overflow="fold")
    table.add_column("Sessions", justify="right")
    table.add_column("Succeeded", justify="right")
    table.add_column("Failed", justify="right")
    table.add_column("Median time", justify="right")
    for r in rows:
        table.add_row(
            Text(r.client),
            Text(r.protocols),
            str(r.sessions),
            Text(str(r.succeeded), style="green" if r.succeeded else "dim"),
            Text(str(r.failed), style="bold red" if r.failed else "dim"),
            view.ms(r.median_s),
        )
    return table


def sessions_table(analysis: Analysis) -> RenderableType:
    sessions = analysis.session_list
    if not sessions:
        return Text("No sign-in sessions found.", style="dim")
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("Start (UTC)", no_wrap=True)
    table.add_column("Client", overflow="fold")
    table.add_column("Location", no_wrap=True)
    table.add_column("Address", overflow="fold")
    table.add_column("User", overflow="fold")
    table.add_column("Auth", no_wrap=True)
    table.add_column("Outcome", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Steps", justify="right")
    table.add_column("Failed at", no_wrap=True)
    for s in sessions:
        table.add_row(
            s.id,
            view.clock(s.start),
            Text(s.client_kind),
            s.location,
            Text(s.client_address),
            Text(view.user_text(s), style="" if s.user else "dim"),
            Text(view.protocol_label(s.auth_protocol)),
            Text(s.outcome, style=view.OUTCOME_STYLES.get(s.outcome, "")),
            view.ms(s.duration),
            str(len(s.steps)),
            Text(s.failure.get("step", "") if s.failure else "", style="red"),
        )
    return table


def failures_block(analysis: Analysis) -> RenderableType | None:
    """For each failed session, the server's own diagnostic, verbatim."""
    lines: list[RenderableType] = []
    for s in analysis.session_list:
        if not s.failure:
            continue
        lines.append(Text.assemble((f"{s.id} ", "bold"), (view.failure_text(s), "red")))
        if s.failure.get("evidence"):
            lines.append(Padding(Text(s.failure["evidence"]), (0, 0, 0, 4)))
    return Group(*lines) if lines else None


def findings_block(analysis: Analysis) -> RenderableType:
    if not analysis.finding_list:
        return Text("No findings.", style="dim")
    items: list[RenderableType] = []
    for f in analysis.finding_list:
        items.append(
            Text.assemble(
                (f"[{f.severity.upper()}] ", view.SEVERITY_STYLES.get(f.severity, "")),
                (f.title, "bold"),
                (f"  ({f.id}; sessions {', '.join(f.sessions) or '—'})", "dim"),
            )
        )
        items.append(Padding(Text(f.detail), (0, 0, 0, 4)))
        if f.advice:
            items.append(Padding(Text.assemble(("Advice: ", "bold"), f.advice), (0, 0, 1, 4)))
    return Group(*items)


def secrets_block(analysis: Analysis, reveal: bool = False) -> RenderableType | None:
    """Credentials and tokens seen; revealed values are cut at 100 characters (use html/json for all)."""
    seen = view.secrets_seen(analysis.step_list)
    if not seen:
        return None
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Session", no_wrap=True)
    table.add_column("Step", no_wrap=True)
    table.add_column("Frame", justify="right")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for x in seen:
        value = x.text(reveal)
        table.add_row(x.session or "—", x.step, str(x.frame), x.secret.kind,
                      Text(view.truncate(" ".join(value.split()), 100), style="yellow" if reveal else "dim"))
    return table


def analysis_view(analysis: Analysis, reveal: bool = False) -> RenderableType:
    """The default `lyncpcap analyze` output."""
    counts = view.outcome_counts(analysis.session_list)
    summary = Text.assemble(
        (f"{len(analysis.session_list)} sign-in session(s): ", "bold"),
        (f"{counts['success']} succeeded", "green"),
        ", ",
        (f"{counts['failure']} failed", "bold red" if counts["failure"] else ""),
        ", ",
        (f"{counts['incomplete']} incomplete", "yellow" if counts["incomplete"] else ""),
        f"; {len(analysis.finding_list)} finding(s)",
    )
    parts: list[RenderableType] = [
        _title("Read"),
        captures_table(analysis),
        Text(""),
        summary,
        Text(""),
        _title("Clients and authentication protocols"),
        clients_table(analysis),
        Text(""),
        _title("Sessions"),
        sessions_table(analysis),
    ]
    failures = failures_block(analysis)
    if failures is not None:
        parts += [Text(""), _title("Why sessions failed"), failures]
    parts += [Text(""), _title("Findings"), findings_block(analysis)]
    carried = secrets_block(analysis, reveal)
    if carried is not None:
        parts += [Text(""), _title("Credentials and tokens on the wire"), carried]
    return Group(*parts)


def timeline_table(session: Session, reveal: bool = False) -> RenderableType:
    """One session's steps: time from the session start, duration, status, protocol; failures red."""
    heading = Text.assemble(
        (f"{session.id} ", "bold"),
        (f"{view.user_text(session)} · {view.client_label(session.client_kind, session.location)} "
         f"{session.client_address} · {view.protocol_label(session.auth_protocol)} · "),
        (session.outcome, view.OUTCOME_STYLES.get(session.outcome, "")),
        f" · started {view.stamp(session.start)}, {view.ms(session.duration)}",
    )
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Step", no_wrap=True)
    table.add_column("Request (server · frame)", overflow="fold", ratio=3, min_width=30)
    table.add_column("Status", no_wrap=True)
    table.add_column("Auth", no_wrap=True)
    table.add_column("Detail", overflow="fold", ratio=2)
    failing = view.failed_step(session)
    states = view.step_states(session)
    for i, (st, state) in enumerate(zip(session.steps, states, strict=True), 1):
        bad = state != "ok"
        style = {"fatal": "bold red", "refused": "dark_orange"}.get(state, "")
        detail = Text(st.detail or "")
        if bad and st.failure_reason:
            detail = Text(st.failure_reason, style=style)
        target = view.safe_url(st.url, reveal) or ""
        host = view.url_host(target)
        if host:
            target = view.url_target(target)
        table.add_row(
            str(i),
            view.offset(st.time - session.start),
            view.ms(st.duration),
            Text(st.step, style=style),
            Text.assemble((f"{st.method or ''} {target}".strip(), style), (f"\n{host or st.dst} · frame {st.frame}", "dim")),
            Text(view.status_text(st), style=style),
            Text(view.protocol_label(st.auth)),
            detail,
            style="on grey15" if state == "fatal" else None,
        )
    parts: list[RenderableType] = [heading, table]
    if session.failure:
        parts.append(Text.assemble(("✖ failed at ", "bold red"), (view.failure_text(session), "red")))
        if session.failure.get("evidence"):
            parts.append(Text.assemble(("  evidence: ", "bold"), session.failure["evidence"]))
        step = failing
        if step is not None and step.failure_evidence and step.failure_evidence != session.failure.get("evidence"):
            parts.append(Text.assemble(("  step evidence: ", "bold"), step.failure_evidence))
    return Group(*parts)


def render_text(renderable: RenderableType, *, width: int = 120, color: bool = False) -> str:
    """Render to a string (plain unless `color`), e.g. for `--output` or Jupyter's text/plain."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="truecolor" if color else None,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )
    console.print(renderable)
    return buffer.getvalue()
