"""`lyncpcap analyze CAPTURE...`: the whole analysis in the chosen format."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lyncpcap.analysis import analyze as run_analysis
from lyncpcap.commands import app


@app.command(
    "analyze",
    help=(
        "Analyse sign-ins in one or more captures.\n\n"
        "Example: [bold]lyncpcap analyze signin.pcapng --format json --output signin.json[/bold]"
    ),
)
def analyze_command(
    captures: list[Path] = typer.Argument(..., help="pcap / pcapng files (gzip'd too)", show_default=False),
    fmt: str = typer.Option("json", "--format", "-f", help="output format"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write here instead of stdout"),
    reveal_secrets: bool = typer.Option(False, "--reveal-secrets", help="show passwords, tokens and tickets"),
) -> None:
    analysis = run_analysis(captures)
    text = analysis.to_json_text(reveal=reveal_secrets)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
