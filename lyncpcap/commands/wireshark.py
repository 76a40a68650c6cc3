"""`lyncpcap wireshark install`: put the lync.lua post-dissector where Wireshark and tshark load it."""

from __future__ import annotations

from pathlib import Path

import typer

from lyncpcap.commands import UsageProblem, app, err
from lyncpcap.wireshark import InstallError, install

wireshark_app = typer.Typer(
    name="wireshark",
    help="Wireshark integration: the lync.lua post-dissector (lync.step, lync.auth, … as fields).",
    rich_markup_mode="rich",
)
app.add_typer(wireshark_app, name="wireshark")


@wireshark_app.callback(invoke_without_command=True)
def _wireshark_group(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help(), err=True)
        raise UsageProblem("`lyncpcap wireshark` needs a command, e.g. `lyncpcap wireshark install`")


@wireshark_app.command(
    "install",
    help=(
        "Copy the lync.lua plugin into Wireshark's personal Lua plugins folder (as `tshark -G folders` "
        "names it) and print where it went.\n\n"
        "Example: [bold]lyncpcap wireshark install[/bold], then "
        "[bold]tshark -r signin.pcapng -Y 'lync.step == \"webticket\"'[/bold]"
    ),
)
def install_command(
    dest: Path | None = typer.Option(
        None, "--dest", help="install into this folder instead of Wireshark's personal Lua plugins folder"
    ),
) -> None:
    try:
        target = install(dest)
    except InstallError as exc:
        raise UsageProblem(str(exc)) from exc
    typer.echo(str(target))
    err.print(
        "Wireshark loads it at start (or Analyze › Reload Lua Plugins); add a column for the field lync.step.",
        markup=False,
    )
