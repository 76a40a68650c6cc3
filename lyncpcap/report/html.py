"""The HTML report: one self-contained file (inline CSS, script and PNGs; a CSP forbids any fetch).

Sections: what was read, the per-client summary, a timeline of every session, the sessions table
(filterable in the page), findings with advice, and per session its timeline, ladder diagram and
steps.  Every value from a capture is escaped; URLs pass through `view.safe_url`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

from lyncpcap import __version__
from lyncpcap.model import Session
from lyncpcap.report import view

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lyncpcap.analysis import Analysis

#: Above this many sessions the per-session pictures are left out (they cost ~0.2 s each).
MAX_SESSION_FIGURES = 200
#: Above this many sessions only the failed ones start unfolded.
OPEN_ALL_UP_TO = 10

CSS = """
:root { --fg:#1f2328; --muted:#57606a; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa;
        --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --refused:#bc4c00; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1500px; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
p.meta, .muted { color: var(--muted); }
nav { margin: .8rem 0 0; display: flex; gap: 1rem; flex-wrap: wrap; }
nav a { color: #0969da; text-decoration: none; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
                   font-size: 12.5px; }
pre.secret { margin: 0; padding: .1rem .3rem; max-height: 8rem; overflow: auto; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem;
      white-space: pre-wrap; word-break: break-word; margin: .4rem 0; }
table { border-collapse: collapse; margin: .4rem 0 1rem; width: 100%; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td.url { word-break: break-all; }
.cards { display: flex; gap: .8rem; flex-wrap: wrap; margin: .8rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .5rem .9rem; min-width: 8rem; background: var(--soft); }
.card b { display: block; font-size: 1.5rem; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 1rem; font-size: 12px; font-weight: 600;
         color: #fff; white-space: nowrap; }
.badge.success { background: var(--ok); } .badge.failure { background: var(--bad); }
.badge.incomplete { background: var(--warn); }
.badge.sev-high { background: var(--bad); } .badge.sev-medium { background: var(--refused); }
.badge.sev-low { background: var(--warn); } .badge.sev-info { background: var(--muted); }
tr.outcome-failure td:first-child { border-left: 4px solid var(--bad); }
tr.outcome-success td:first-child { border-left: 4px solid var(--ok); }
tr.outcome-incomplete td:first-child { border-left: 4px solid var(--warn); }
tr.step-fatal { background: #ffebe9 !important; color: #82071e; font-weight: 600; }
tr.step-refused { background: #fff1e5 !important; }
.failure-box { border-left: 4px solid var(--bad); background: #fff5f5; padding: .5rem .9rem; margin: .6rem 0;
               border-radius: 0 6px 6px 0; }
.warnings li { color: var(--warn); }
.filters { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; margin: .4rem 0; }
.filters input[type=search] { font: inherit; padding: .3rem .5rem; min-width: 22rem; border: 1px solid var(--line);
                              border-radius: 6px; }
figure { margin: .8rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 12.5px; }
details.session { border: 1px solid var(--line); border-radius: 8px; padding: .3rem 1rem; margin: .8rem 0; }
details.session > summary { cursor: pointer; font-weight: 600; padding: .4rem 0; }
details.session.outcome-failure { border-left: 5px solid var(--bad); }
details.session.outcome-success { border-left: 5px solid var(--ok); }
details.session.outcome-incomplete { border-left: 5px solid var(--warn); }
article.finding { border: 1px solid var(--line); border-radius: 8px; padding: .2rem 1rem .6rem; margin: .8rem 0; }
article.finding.sev-high { border-left: 5px solid var(--bad); }
article.finding.sev-medium { border-left: 5px solid var(--refused); }
.advice { background: #eef6ff; border-radius: 6px; padding: .5rem .8rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .4rem 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
"""

SCRIPT = """
(function () {
  var input = document.getElementById('session-filter');
  var table = document.getElementById('sessions-table');
  if (!input || !table) { return; }
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name="outcome"]'));
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var count = document.getElementById('session-count');
  function apply() {
    var q = input.value.trim().toLowerCase();
    var allowed = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    var shown = 0;
    rows.forEach(function (r) {
      var ok = allowed.indexOf(r.getAttribute('data-outcome')) >= 0 &&
               (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' sessions shown';
  }
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === 'DETAILS') { el.open = true; }
  }
  input.addEventListener('input', apply);
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  window.addEventListener('hashchange', openTarget);
  apply();
  openTarget();
})();
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def png_data_uri(fig: Figure, dpi: int = 100) -> str:
    from lyncpcap.report.plots import figure_bytes

    return "data:image/png;base64," + base64.b64encode(figure_bytes(fig, "png", dpi)).decode("ascii")


def img(fig: Figure, alt: str, caption: str, cls: str) -> str:
    return (f'<figure class="{cls}"><img src="{png_data_uri(fig)}" alt="{e(alt)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _table(header: Iterable[tuple[str, str]], rows: Iterable[str], attrs: str = "") -> str:
    head = "".join(f'<th class="{cls}">{e(name)}</th>' if cls else f"<th>{e(name)}</th>" for name, cls in header)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def badge(outcome: str) -> str:
    return f'<span class="badge {e(outcome)}">{e(outcome)}</span>'


# -- sections -------------------------------------------------------------------------------------


def overview(analysis: Analysis) -> str:
    rows = []
    warnings = []
    for c in analysis.captures:
        rows.append(
            f"<tr><td class='mono'>{e(c.path)}</td><td>{e(c.format)}{' (gzip)' if c.compressed else ''}</td>"
            f"<td class='num'>{c.packets:,}</td><td>{'yes' if c.decrypted else 'no'}</td>"
            f"<td class='num'>{len(c.warnings)}</td></tr>"
        )
        warnings += [f"<li><span class='mono'>{e(c.path)}</span>: {e(w)}</li>" for w in c.warnings]
    counts = view.outcome_counts(analysis.session_list)
    cards = "".join(
        f"<div class='card'><b style='color:{colour}'>{n}</b>{e(label)}</div>"
        for n, label, colour in (
            (len(analysis.session_list), "sign-in sessions", "inherit"),
            (counts["success"], "succeeded", view.OUTCOME_COLOURS["success"]),
            (counts["failure"], "failed", view.OUTCOME_COLOURS["failure"]),
            (counts["incomplete"], "incomplete", view.OUTCOME_COLOURS["incomplete"]),
            (len(analysis.finding_list), "findings", "inherit"),
        )
    )
    header = [("Capture", ""), ("Format", ""), ("Packets", "num"), ("Decrypted", ""), ("Warnings", "num")]
    out = ["<section id='overview'><h2>What was read</h2>", _table(header, rows, " id='captures'")]
    if warnings:
        out.append(f"<ul class='warnings'>{''.join(warnings)}</ul>")
    out.append(f"<div class='cards'>{cards}</div></section>")
    return "".join(out)


def clients_table(analysis: Analysis) -> str:
    return client_summary_table(view.client_rows(analysis))


def client_summary_table(client_rows: list[view.ClientRow]) -> str:
    """The seed's "Client / Authentication protocol" table, with outcomes and median time."""
    rows = [
        f"<tr><td>{e(r.client)}</td><td>{e(r.protocols)}</td><td class='num'>{r.sessions}</td>"
        f"<td class='num' style='color:{view.OUTCOME_COLOURS['success'] if r.succeeded else 'inherit'}'>{r.succeeded}</td>"
        f"<td class='num' style='color:{view.OUTCOME_COLOURS['failure'] if r.failed else 'inherit'}'>{r.failed}</td>"
        f"<td class='num'>{e(view.ms(r.median_s))}</td></tr>"
        for r in client_rows
    ]
    if not rows:
        return "<p class='muted'>No sign-in sessions, so no clients to summarise.</p>"
    header = [("Client", ""), ("Authentication protocol", ""), ("Sessions", "num"), ("Succeeded", "num"),
              ("Failed", "num"), ("Median time", "num")]
    return _table(header, rows, " id='client-summary' class='summary'")


def sessions_table(analysis: Analysis) -> str:
    if not analysis.session_list:
        return "<p class='muted'>No sign-in sessions found.</p>"
    rows = []
    for s in analysis.session_list:
        rows.append(
            f"<tr class='outcome-{e(s.outcome)}' data-outcome='{e(s.outcome)}'>"
            f"<td><a href='#session-{e(s.id)}'>{e(s.id)}</a></td><td class='mono'>{e(view.clock(s.start))}</td>"
            f"<td>{e(s.client_kind)}</td><td>{e(s.location)}</td><td class='mono'>{e(s.client_address)}</td>"
            f"<td>{e(view.user_text(s))}</td><td>{e(view.protocol_label(s.auth_protocol))}</td>"
            f"<td>{badge(s.outcome)}</td><td class='num'>{e(view.ms(s.duration))}</td>"
            f"<td class='num'>{len(s.steps)}</td><td>{e(view.failure_text(s))}</td></tr>"
        )
    boxes = "".join(
        f"<label><input type='checkbox' name='outcome' value='{o}' checked> {o}</label>"
        for o in ("success", "failure", "incomplete")
    )
    filters = (
        "<div class='filters'><input type='search' id='session-filter' "
        "placeholder='Filter by user, client, address, protocol, reason…' aria-label='Filter sessions'>"
        f"{boxes}<span id='session-count' class='muted'></span></div>"
    )
    header = [("ID", ""), ("Start (UTC)", ""), ("Client", ""), ("Location", ""), ("Address", ""), ("User", ""),
              ("Auth", ""), ("Outcome", ""), ("Duration", "num"), ("Steps", "num"), ("Failure", "")]
    return filters + _table(header, rows, " id='sessions-table'")


def findings_section(analysis: Analysis) -> str:
    if not analysis.finding_list:
        return "<p class='muted'>No findings.</p>"
    out = []
    for f in analysis.finding_list:
        links = ", ".join(f"<a href='#session-{e(sid)}'>{e(sid)}</a>" for sid in f.sessions) or "—"
        evidence = "".join(f"<li>{e(x)}</li>" for x in f.evidence)
        out.append(
            f"<article class='finding sev-{e(f.severity)}' id='finding-{e(f.id)}'>"
            f"<h3><span class='badge sev-{e(f.severity)}'>{e(f.severity)}</span> {e(f.title)} "
            f"<code class='muted'>{e(f.id)}</code></h3><p>{e(f.detail)}</p><p>Sessions: {links}</p>"
            + (f"<details><summary>Evidence ({len(f.evidence)})</summary><ul>{evidence}</ul></details>" if evidence else "")
            + (f"<p class='advice'><strong>Advice:</strong> {e(f.advice)}</p>" if f.advice else "")
            + "</article>"
        )
    return "".join(out)


def secrets_section(analysis: Analysis, reveal: bool = False) -> str:
    """The credentials, tokens and tickets the steps carried: fingerprints, or the values when revealed."""
    seen = view.secrets_seen(analysis.step_list)
    if not seen:
        return "<p class='muted'>None seen (or none decrypted).</p>"
    rows = [
        f"<tr><td>{e(x.session or '—')}</td><td>{e(x.step)}</td><td class='num'>{x.frame}</td>"
        f"<td>{e(x.secret.kind)}</td><td><pre class='secret'>{e(x.text(reveal))}</pre></td></tr>"
        for x in seen
    ]
    note = ("<p class='failure-box'><strong>These values are revealed (--reveal-secrets):</strong> handle this "
            "report like the passwords and tokens it contains.</p>" if reveal else
            "<p class='muted'>Values are shown as fingerprints; the same fingerprint twice is the same value "
            "(run with --reveal-secrets to see them).</p>")
    header = [("Session", ""), ("Step", ""), ("Frame", "num"), ("Kind", ""), ("Value", "")]
    return note + _table(header, rows, " id='secrets-table'")


def steps_table(session: Session, reveal: bool = False) -> str:
    rows = []
    for i, (st, state) in enumerate(zip(session.steps, view.step_states(session), strict=True), 1):
        mark = {"fatal": "✖ ", "refused": "! "}.get(state, "")
        detail = e(st.detail)
        if st.failure_reason:
            detail = f"<strong>{e(st.failure_reason)}</strong>"
            if st.failure_evidence:
                detail += f"<pre>{e(st.failure_evidence)}</pre>"
        colour = view.STEP_COLOURS.get(st.step, "#999")
        rows.append(
            f"<tr class='step-{state}'><td class='num'>{i}</td><td class='num mono'>{e(view.offset(st.time - session.start))}</td>"
            f"<td class='num'>{e(view.ms(st.duration))}</td>"
            f"<td class='nowrap'><span style='color:{colour}'>■</span> {e(mark + st.step)}</td>"
            f"<td>{e(st.method or '')}</td><td class='url mono'>{e(view.safe_url(st.url, reveal) or '')}</td>"
            f"<td>{e(view.status_text(st))}</td><td>{e(view.protocol_label(st.auth))}</td>"
            f"<td class='mono'>{e(st.src)} → {e(st.dst)}</td><td class='num'>{st.frame}</td><td>{detail}</td></tr>"
        )
    header = [("#", "num"), ("Time", "num"), ("Duration", "num"), ("Step", ""), ("Method", ""), ("URL / target", ""),
              ("Status", ""), ("Auth", ""), ("From → to", ""), ("Frame", "num"), ("Detail", "")]
    return _table(header, rows, " class='steps'")


def session_section(session: Session, reveal: bool = False, *, figures: bool = True, open_: bool = True) -> str:
    s = session
    facts = [
        ("Client", f"{e(view.client_label(s.client_kind, s.location))}, <span class='mono'>{e(s.client_address)}</span>"),
        ("User agent", f"<span class='mono'>{e(s.user_agent or '—')}</span>"),
        ("User", e(view.user_text(s))),
        ("Authentication", e(view.protocol_label(s.auth_protocol))),
        ("Started", f"{e(view.stamp(s.start))}, took {e(view.ms(s.duration))}, {len(s.steps)} steps"),
        ("Location evidence", "<br>".join(e(x) for x in s.location_evidence[:6])
         + (f"<br><span class='muted'>… {len(s.location_evidence) - 6} more</span>" if len(s.location_evidence) > 6 else "")
         or "—"),
    ]
    out = [
        f"<details class='session outcome-{e(s.outcome)}' id='session-{e(s.id)}'{' open' if open_ else ''}>",
        f"<summary>{e(s.id)} · {e(view.user_text(s))} · {e(view.client_label(s.client_kind, s.location))} · "
        f"{e(view.protocol_label(s.auth_protocol))} {badge(s.outcome)}</summary>",
        "<dl class='facts'>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
    ]
    if s.failure:
        out.append(
            f"<div class='failure-box'><strong>✖ Failed at {e(s.failure.get('step'))}:</strong> "
            f"{e(s.failure.get('reason'))}"
            + (f"<div>Server's diagnostic, verbatim:</div><pre>{e(s.failure['evidence'])}</pre>"
               if s.failure.get("evidence") else "")
            + "</div>"
        )
    if figures and s.steps:
        from lyncpcap.report import ladder, plots

        out.append(img(plots.session_figure(s, reveal), f"Timeline of session {s.id}",
                       f"Timeline of {s.id}: each step a bar from the session start, coloured by step; "
                       "✖ marks the step the session failed at.", "timeline"))
        out.append(img(ladder.figure(s, reveal), f"Ladder diagram of session {s.id}",
                       f"Ladder diagram of {s.id}: who talked to whom, in order.", "ladder"))
    out.append(steps_table(s, reveal) if s.steps else "<p class='muted'>No steps.</p>")
    out.append("</details>")
    return "".join(out)


def report(analysis: Analysis, reveal: bool = False, *, title: str | None = None) -> str:
    """The whole analysis as one self-contained HTML page."""
    from lyncpcap.report import plots

    names = ", ".join(c.path for c in analysis.captures)
    heading = title or "Lync / Skype for Business sign-in report"
    sessions = analysis.session_list
    figures = len(sessions) <= MAX_SESSION_FIGURES
    open_all = len(sessions) <= OPEN_ALL_UP_TO
    overview_fig = img(plots.capture_figure(sessions), "Timeline of all sessions",
                       "Every session as a row, its steps as coloured segments; ✖ marks where a session failed.",
                       "timeline overview")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(heading)} — {e(names)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{e(heading)}</h1><p class='meta'>lyncpcap {e(__version__)} · {e(names)}</p>",
        "<nav><a href='#overview'>What was read</a><a href='#clients'>Clients</a><a href='#all-sessions'>Timeline</a>"
        "<a href='#sessions'>Sessions</a><a href='#findings'>Findings</a><a href='#secrets'>Credentials</a>"
        "<a href='#details'>Session details</a></nav>"
        "</header>",
        ("<p class='failure-box'><strong>This report contains passwords, tokens and tickets in clear text "
         "(made with --reveal-secrets).</strong> Share it only as you would share those.</p>" if reveal else ""),
        overview(analysis),
        f"<section id='clients'><h2>Clients and authentication protocols</h2>{clients_table(analysis)}</section>",
        f"<section id='all-sessions'><h2>Timeline of all sessions</h2>{overview_fig}</section>",
        f"<section id='sessions'><h2>Sessions</h2>{sessions_table(analysis)}</section>",
        f"<section id='findings'><h2>Findings</h2>{findings_section(analysis)}</section>",
        f"<section id='secrets'><h2>Credentials and tokens on the wire</h2>{secrets_section(analysis, reveal)}</section>",
        "<section id='details'><h2>Session details</h2>",
    ]
    if not figures:
        parts.append(f"<p class='muted'>{len(sessions)} sessions: pictures are drawn for up to "
                     f"{MAX_SESSION_FIGURES}; use <code>lyncpcap plot --session ID</code> for one.</p>")
    parts += [session_section(s, reveal, figures=figures, open_=open_all or s.outcome == "failure") for s in sessions]
    if not sessions:
        parts.append("<p class='muted'>No sign-in sessions found.</p>")
    parts.append(f"</section><script>{SCRIPT}</script></body></html>\n")
    return "".join(parts)


# -- the index page of `lyncpcap batch` ----------------------------------------------------------


@dataclass(slots=True)
class IndexEntry:
    """One capture of a batch: its reports, or the one-line reason it could not be read."""

    name: str
    path: str
    error: str | None = None
    html: str | None = None  # file names relative to the index
    json: str | None = None
    packets: int = 0
    sessions: int = 0
    succeeded: int = 0
    failed: int = 0
    incomplete: int = 0
    findings: list[str] = field(default_factory=list)
    warnings: int = 0


def index_page(
    entries: Sequence[IndexEntry],
    client_rows: list[view.ClientRow],
    tables: Sequence[str],
    skipped: Sequence[str] = (),
    title: str = "lyncpcap batch report",
) -> str:
    """The page linking every per-capture report, the combined tables and the failures."""
    ok = [x for x in entries if x.error is None]
    bad = [x for x in entries if x.error is not None]
    cards = "".join(
        f"<div class='card'><b style='color:{colour}'>{n}</b>{e(label)}</div>"
        for n, label, colour in (
            (len(ok), "captures analysed", "inherit"),
            (len(bad), "could not be read", view.FAILURE_COLOUR if bad else "inherit"),
            (sum(x.sessions for x in ok), "sign-in sessions", "inherit"),
            (sum(x.succeeded for x in ok), "succeeded", view.OUTCOME_COLOURS["success"]),
            (sum(x.failed for x in ok), "failed", view.OUTCOME_COLOURS["failure"]),
        )
    )
    rows = []
    for x in ok:
        link = f"<a href='{e(x.html)}'>{e(x.name)}</a>" if x.html else e(x.name)
        json_link = f"<a href='{e(x.json)}'>json</a>" if x.json else ""
        rows.append(
            f"<tr class='outcome-{'failure' if x.failed else 'success'}'><td>{link}</td><td>{json_link}</td>"
            f"<td class='mono'>{e(x.path)}</td><td class='num'>{x.packets:,}</td><td class='num'>{x.sessions}</td>"
            f"<td class='num'>{x.succeeded}</td><td class='num'>{x.failed}</td><td class='num'>{x.incomplete}</td>"
            f"<td>{e(', '.join(sorted(set(x.findings))) or '—')}</td><td class='num'>{x.warnings}</td></tr>"
        )
    header = [("Report", ""), ("Data", ""), ("Capture", ""), ("Packets", "num"), ("Sessions", "num"),
              ("Succeeded", "num"), ("Failed", "num"), ("Incomplete", "num"), ("Findings", ""), ("Warnings", "num")]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{e(title)}</h1><p class='meta'>lyncpcap {e(__version__)} · {len(entries)} capture(s)</p></header>",
        f"<div class='cards'>{cards}</div>",
    ]
    if bad:
        items = "".join(f"<li class='mono'>{e(x.error)}</li>" for x in bad)  # the error names the file
        parts.append(f"<section id='failures'><h2>Could not be read</h2><ul class='failures'>{items}</ul></section>")
    parts.append("<section id='clients'><h2>Clients and authentication protocols, all captures</h2>"
                 f"{client_summary_table(client_rows)}</section>")
    parts.append("<section id='captures'><h2>Captures</h2>"
                 + (_table(header, rows, " id='captures-table'") if rows else "<p class='muted'>None analysed.</p>")
                 + "</section>")
    links = "".join(f"<li><a href='{e(t)}'>{e(t)}</a></li>" for t in tables)
    parts.append(f"<section id='tables'><h2>Combined tables</h2><ul>{links or '<li>none</li>'}</ul></section>")
    if skipped:
        items = "".join(f"<li class='mono'>{e(p)}</li>" for p in skipped)
        parts.append(f"<section id='skipped'><h2>Not captures</h2><details><summary>{len(skipped)} file(s) skipped "
                     f"(neither a capture by content nor by name)</summary><ul>{items}</ul></details></section>")
    parts.append("</body></html>\n")
    return "".join(parts)
