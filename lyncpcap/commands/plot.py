"""`lyncpcap plot CAPTURE --output FILE.png|svg`: the timeline of a capture's sessions as a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from lyncpcap.commands import UsageProblem, app
from lyncpcap.commands.common import (
    KeylogOption,
    QuietOption,
    RevealOption,
    SessionOption,
    choice,
    note,
    one_session,
    run_analysis,
)

#: picture formats by suffix (what matplotlib's canvases write)
PICTURE_FORMATS: dict[str, str] = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
KINDS: tuple[str, ...] = ("timeline", "ladder")
ALIGNS: tuple[str, ...] = ("auto", "start", "clock")

HELP = """Draw the timeline of every session in the capture(s): a row per session, its steps as coloured bars, a cross where it failed.  The --output suffix chooses PNG, SVG or PDF.

With --session ID the picture is that session's own timeline.  --kind ladder draws a session's ladder diagram (client, reverse proxy, front end, AD FS, KDC as lanes): the --session, or else the first failed one.  --align start lines sessions up at their first step; clock keeps real time; auto picks start when the sessions are short against the time the capture spans.

[bold]Examples[/bold]

  lyncpcap plot signin.pcapng --output sessions.png

  lyncpcap plot signin.pcapng --session s1 --kind ladder --output s1-ladder.svg
"""


@app.command("plot", help=HELP, no_args_is_help=True)
def plot_command(
    capture: Annotated[list[Path], typer.Argument(metavar="CAPTURE", help="pcap / pcapng file(s)", show_default=False)],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="FILE.png|svg|pdf", show_default=False, help="the picture to write"),
    ],
    session: SessionOption = None,
    kind: Annotated[
        str, typer.Option("--kind", metavar="|".join(KINDS), callback=choice("--kind", KINDS), help="what to draw")
    ] = "timeline",
    align: Annotated[
        str,
        typer.Option("--align", metavar="|".join(ALIGNS), callback=choice("--align", ALIGNS),
                     help="how sessions share the time axis"),
    ] = "auto",
    dpi: Annotated[int, typer.Option("--dpi", help="resolution of PNG output (50 to 600)")] = 110,
    keylog: KeylogOption = None,
    reveal_secrets: RevealOption = False,
    quiet: QuietOption = False,
) -> None:
    fmt = PICTURE_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise UsageProblem(f"--output {output}: the name must end in {', '.join(PICTURE_FORMATS)}")
    if output.is_dir():
        raise UsageProblem(f"--output {output}: is a directory")
    if not 50 <= dpi <= 600:
        raise UsageProblem(f"--dpi {dpi}: choose between 50 and 600")
    analysis = run_analysis(capture, keylog, quiet)

    from lyncpcap.report import plots

    if kind == "ladder":
        from lyncpcap.report import ladder

        fig = ladder.figure(one_session(analysis, session, "ladder diagram", quiet), reveal_secrets)
    elif session is not None:
        fig = plots.session_figure(one_session(analysis, session, "timeline", quiet), reveal_secrets)
    else:
        title = analysis.captures[0].path if len(analysis.captures) == 1 else f"{len(analysis.captures)} captures"
        fig = plots.capture_figure(analysis.session_list, align=cast(Literal["auto", "start", "clock"], align),
                                   title=title)
        if not analysis.session_list:
            note("no sign-in sessions in the capture; the picture says so", quiet)
    output.write_bytes(plots.figure_bytes(fig, fmt, dpi))
    note(f"wrote {output}", quiet)
