"""`lyncpcap analyze CAPTURE...`: the whole analysis in the chosen format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TextIO

import typer

from lyncpcap.commands import UsageProblem, app
from lyncpcap.commands.common import (
    JobsOption,
    KeylogOption,
    OutputOption,
    QuietOption,
    RevealOption,
    RsaKeyOption,
    byte_progress,
    checked_keylog,
    checked_rsa_keys,
    choice,
    note,
    run_analysis,
    stdout_console,
    write_output,
    write_stream,
)

FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv", "markdown", "html")
#: `--output` suffixes that choose the format when `--format` is not given
FORMAT_BY_SUFFIX: dict[str, str] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "table",
}

HELP = """Analyse the sign-ins in one or more captures (read together, as one analysis).

The default [bold]table[/bold] view shows what was read, the per-client protocol summary, the sessions with outcome and failure reason, and the findings.  With [bold]--format csv[/bold] and an --output folder (an existing folder, a path ending in /, or one without a suffix) five tables are written: sessions, steps, auth, clients and findings.  Without --format, the --output suffix (.json .jsonl .csv .md .html .txt) chooses it.

Inputs are recognised by their content: pcap and pcapng (gzip'd or not; Wireshark exported-PDU files too), Fiddler [bold].saz[/bold] and browser [bold].har[/bold] archives.  TLS is decrypted by tshark (apt-get install tshark) with --keylog, with secrets embedded in a pcapng (used automatically), or with --rsa-key for RSA key exchange; a connection that stays encrypted is listed with the reason, and no HTTP or SIP step is inferred from it (without keys, one to a Lync server is a step of its own: where the client went, and when).

[bold]Examples[/bold]

  lyncpcap analyze signin.pcapng

  lyncpcap analyze signin.pcapng --keylog sslkeys.log

  lyncpcap analyze frontend.pcapng --rsa-key fe01.pem@10.0.0.21:443

  lyncpcap analyze fiddler.saz browser.har

  lyncpcap analyze signin.pcapng --format html --output report.html

  lyncpcap analyze a.pcapng b.pcap.gz --format csv --output tables/
"""


def _is_folder(output: Path) -> bool:
    return output.is_dir() or str(output).endswith(("/", "\\")) or (not output.exists() and not output.suffix)


def resolve_format(fmt: str | None, output: Path | None) -> str:
    if fmt is not None:
        return fmt
    if output is not None and output.suffix.lower() in FORMAT_BY_SUFFIX:
        return FORMAT_BY_SUFFIX[output.suffix.lower()]
    return "table"


@app.command("analyze", help=HELP, no_args_is_help=True)
def analyze_command(
    captures: Annotated[
        list[Path], typer.Argument(metavar="CAPTURE", help="pcap / pcapng files (gzip'd or not), SAZ or HAR archives", show_default=False)
    ],
    keylog: KeylogOption = None,
    rsa_key: RsaKeyOption = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", metavar="|".join(FORMATS), callback=choice("--format", FORMATS),
                     show_default=False, help="output format (default: table, or from the --output suffix)"),
    ] = None,
    output: OutputOption = None,
    reveal_secrets: RevealOption = False,
    quiet: QuietOption = False,
    jobs: JobsOption = None,
) -> None:
    chosen = resolve_format(fmt, output)
    if chosen == "csv" and output is not None and _is_folder(output) and output.exists() and not output.is_dir():
        raise UsageProblem(f"--output {output}: not a folder")
    if chosen in ("json", "jsonl"):
        # streamed: each session is written when it closes, so memory stays flat on any capture size
        stream_document(captures, keylog, rsa_key, quiet, reveal_secrets, output, lines=chosen == "jsonl", jobs=jobs)
        return
    analysis = run_analysis(captures, keylog, quiet, rsa_key, jobs)
    reveal = reveal_secrets
    if chosen == "table":
        from lyncpcap.report import table

        if output is None:
            stdout_console(None).print(table.analysis_view(analysis, reveal))
        else:
            write_output(table.render_text(table.analysis_view(analysis, reveal), width=140), output)
    elif chosen == "csv":
        from lyncpcap.report import exports

        if output is not None and _is_folder(output):
            written = exports.write_csv_dir(analysis, output, reveal)
            note(f"wrote {', '.join(p.name for p in written)} to {output}", quiet)
        else:
            write_output(exports.csv_text(exports.tables(analysis, reveal)["sessions"]), output)
    elif chosen == "markdown":
        from lyncpcap.report import markdown

        write_output(markdown.report(analysis, reveal), output)
    else:
        from lyncpcap.report import html

        write_output(html.report(analysis, reveal), output)


def stream_document(
    captures: list[Path],
    keylog: Path | None,
    rsa_keys: list[str] | None,
    quiet: bool,
    reveal: bool,
    output: Path | None,
    *,
    lines: bool,
    jobs: int | None = None,
) -> None:
    """The JSON document (or JSON Lines) written while the analysis runs."""
    from lyncpcap import inputs, pipeline
    from lyncpcap.read import open_capture
    from lyncpcap.report.stream import DocumentWriter

    checked_key = checked_keylog(keylog)
    keys = checked_rsa_keys(rsa_keys)
    for path in captures:  # unreadable input: one line and exit 2 before any output is opened
        if inputs.sniff(path) is inputs.InputKind.CAPTURE:
            with open_capture(path):
                pass

    def produce(out: TextIO) -> None:
        with DocumentWriter(out, reveal=reveal, lines=lines) as writer, byte_progress(captures, quiet) as progress:
            pipeline.run(list(captures), writer, keylog=checked_key, rsa_keys=keys, progress=progress, jobs=jobs)
            writer.end()

    write_stream(produce, output)
