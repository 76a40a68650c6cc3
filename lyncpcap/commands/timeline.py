"""`lyncpcap timeline CAPTURE [--session ID]`: a session's steps in time order, failures marked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lyncpcap.commands import app
from lyncpcap.commands.common import (
    KeylogOption,
    OutputOption,
    QuietOption,
    RevealOption,
    SessionOption,
    choice,
    one_session,
    pick_sessions,
    run_analysis,
    stdout_console,
    write_output,
)

FORMATS: tuple[str, ...] = ("table", "markdown", "mermaid", "json", "csv")

HELP = """Show a session's steps: time from the session start, duration, status and protocol, with the failing step in red, its reason and the server's diagnostic verbatim.

Without --session every session is shown, one after another.  [bold]mermaid[/bold] prints a Mermaid sequenceDiagram of one session: --session picks it, otherwise the first failed one; [bold]markdown[/bold] gives each session's table with its diagram, ready for a ticket.

[bold]Examples[/bold]

  lyncpcap timeline signin.pcapng

  lyncpcap timeline signin.pcapng --session s2 --format mermaid

  lyncpcap timeline signin.pcapng --format markdown --output ticket.md
"""


@app.command("timeline", help=HELP, no_args_is_help=True)
def timeline_command(
    capture: Annotated[list[Path], typer.Argument(metavar="CAPTURE", help="pcap / pcapng file(s)", show_default=False)],
    session: SessionOption = None,
    keylog: KeylogOption = None,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", metavar="|".join(FORMATS), callback=choice("--format", FORMATS),
                     help="output format"),
    ] = "table",
    output: OutputOption = None,
    reveal_secrets: RevealOption = False,
    quiet: QuietOption = False,
) -> None:
    analysis = run_analysis(capture, keylog, quiet)
    reveal = reveal_secrets
    if fmt == "mermaid":
        from lyncpcap.report import mermaid

        chosen_one = one_session(analysis, session, "Mermaid diagram", quiet)
        write_output(mermaid.sequence_diagram(chosen_one, reveal), output)
        return
    chosen = pick_sessions(analysis, session)
    if fmt == "table":
        from rich.console import Group
        from rich.text import Text

        from lyncpcap.report import table

        parts = []
        for s in chosen:
            parts += [table.timeline_table(s, reveal), Text("")]
        if not parts:
            hints = [Text(f"⚠ {c.path}: {w}", style="yellow") for c in analysis.captures for w in c.warnings]
            parts = [Text("No sign-in sessions found."), *hints]
        view = Group(*parts)
        if output is None:
            stdout_console(None).print(view)
        else:
            write_output(table.render_text(view, width=140), output)
    elif fmt == "markdown":
        from lyncpcap.report import markdown

        text = "\n\n".join(markdown.session_markdown(s, reveal, level=2) for s in chosen) or "_No sign-in sessions found._"
        write_output(text + "\n", output)
    elif fmt == "json":
        from lyncpcap.report import exports

        doc = exports.document(analysis, reveal)
        wanted = {s.id for s in chosen}
        records = [r for r in doc["sessions"] if r["id"] in wanted]
        write_output(json.dumps(records, indent=2, ensure_ascii=False) + "\n", output)
    else:
        from lyncpcap.report import exports

        steps = exports.tables(analysis, reveal)["steps"]
        write_output(exports.csv_text(steps[steps["session"].isin([s.id for s in chosen])]), output)
