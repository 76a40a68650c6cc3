"""`lyncpcap audit CAPTURE...`: the security findings, with an exit status for scripted checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from lyncpcap.analysis import analyze as run_analysis
from lyncpcap.commands import UsageProblem, app
from lyncpcap.findings import Thresholds
from lyncpcap.model import SEVERITIES, Finding
from lyncpcap.report.document import finding_record

EXIT_FINDINGS = 3
DEFAULTS = Thresholds()


@app.command(
    "audit",
    help=(
        "Report how safely Lync is exposed: domain credentials from outside, missing two-factor, lockout "
        "risk, password spraying, NTLMv1, anonymous access, Kerberos falling back to NTLM, and what the "
        "servers advertise.\n\n"
        f"Exit status {EXIT_FINDINGS} when a finding at or above --fail-on exists (0 otherwise; 2 for "
        "unusable input).\n\n"
        "Example: [bold]lyncpcap audit edge.pcapng --fail-on high[/bold]"
    ),
)
def audit_command(
    captures: list[Path] = typer.Argument(..., help="pcap / pcapng files", show_default=False),
    fail_on: str | None = typer.Option(None, "--fail-on", help="high or medium: exit 3 if such findings exist"),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json"),
    keylog: Path | None = typer.Option(None, "--keylog", help="TLS key log (SSLKEYLOGFILE) to decrypt with"),
    lockout_failures: int = typer.Option(
        DEFAULTS.lockout_failures, "--lockout-failures", help="failed authentications of one account that make a lockout risk"
    ),
    lockout_window: float = typer.Option(
        DEFAULTS.lockout_window_s, "--lockout-window", help="… within this many seconds"
    ),
    spray_accounts: int = typer.Option(
        DEFAULTS.spray_accounts, "--spray-accounts", help="accounts one source must fail against to count as spraying"
    ),
    spray_max_tries: int = typer.Option(DEFAULTS.spray_max_tries, "--spray-max-tries", help="… with at most this many tries each"),
) -> None:
    if fail_on is not None and fail_on not in ("high", "medium"):
        raise UsageProblem(f"--fail-on takes high or medium, not {fail_on!r}")
    if fmt not in ("table", "json"):
        raise UsageProblem(f"--format takes table or json, not {fmt!r}")
    if keylog is not None and not keylog.is_file():
        raise UsageProblem(f"{keylog}: no such key log file")
    thresholds = Thresholds(
        lockout_failures=lockout_failures,
        lockout_window_s=lockout_window,
        spray_accounts=spray_accounts,
        spray_max_tries=spray_max_tries,
    )
    analysis = run_analysis(captures, keylog=keylog, thresholds=thresholds)
    findings = analysis.finding_list
    if fmt == "json":
        sys.stdout.write(json.dumps([finding_record(f) for f in findings], indent=2, ensure_ascii=False) + "\n")
    else:
        print_findings(Console(highlight=False), findings)
    if fail_on is not None:
        limit = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) <= limit for f in findings):
            raise typer.Exit(EXIT_FINDINGS)


COLOUR = {"high": "bold red", "medium": "bold yellow", "low": "cyan", "info": "dim"}


def print_findings(out: Console, findings: list[Finding], *, evidence: int = 8) -> None:
    """Each finding as a block: severity and title, what was seen, the evidence, the advice."""
    if not findings:
        out.print("No findings.")
        return
    for f in findings:
        out.print(f"[{COLOUR[f.severity]}]{f.severity.upper():<6}[/] [bold]{escape(f.title)}[/]  [dim]({f.id})[/]")
        out.print(escape(f.detail), soft_wrap=False)
        for line in f.evidence[:evidence]:
            out.print(f"  • {escape(line)}")
        if len(f.evidence) > evidence:
            out.print(f"  … {len(f.evidence) - evidence} more")
        out.print(f"[italic]Advice:[/] {escape(f.advice)}")
        out.print()
