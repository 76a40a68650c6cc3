"""The `lyncpcap` command line: one module per command, all registering on this Typer `app`.

Data goes to stdout (or `--output`), progress and diagnostics to stderr (rich).  Exit status per
CONTRACT.md: 0 analysed, 1 internal error, 2 unusable input or usage.
"""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="lyncpcap",
    help="Analyse Lync 2013 / Skype for Business sign-ins in packet captures.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

#: diagnostics and progress; data never goes here
err = Console(stderr=True, highlight=False)


class UsageProblem(Exception):
    """A problem with what the user asked for (exit status 2), reported in one line."""


def _version(value: bool) -> None:
    if value:
        from lyncpcap import __version__

        typer.echo(f"lyncpcap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="show the version and exit"),
) -> None:
    """Analyse Lync 2013 / Skype for Business sign-ins in packet captures."""
