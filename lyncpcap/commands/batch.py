"""`lyncpcap batch DIR_OR_FILES... --output DIR`: every capture of a folder, in parallel.

Each capture gets `<name>.html` and `<name>.json`; the sessions, steps, clients and findings of
all of them go into combined CSV and Parquet tables (with a `capture` column), and `index.html`
links everything and lists the captures that could not be read with their one-line errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lyncpcap.commands import UsageProblem, app
from lyncpcap.commands.common import (
    KeylogOption,
    QuietOption,
    RevealOption,
    checked_keylog,
    count_progress,
    note,
)
from lyncpcap.errors import CaptureError
from lyncpcap.model import Session

if TYPE_CHECKING:
    import pandas as pd

#: first bytes of what `lyncpcap.read` opens: pcap (both byte orders, µs and ns), pcapng, gzip,
#: Network Monitor 1.x and 2.x
CAPTURE_MAGICS: tuple[bytes, ...] = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
    b"\x1f\x8b",
    b"RTSS",
    b"GMBU",
)
#: names that promise a capture: such a file is tried (and its error listed) whatever it contains
#: (Windows traces, .etl and .matp, are listed with how to turn them into a capture)
CAPTURE_SUFFIXES: tuple[str, ...] = (".pcap", ".pcapng", ".cap", ".ntar", ".saz", ".har", ".etl", ".matp", ".matu")
#: the combined tables, each as CSV and Parquet
COMBINED: tuple[str, ...] = ("sessions", "steps", "clients", "findings")

HELP = """Analyse every capture in folders (recursively) and files, in parallel, into one report folder.

Each capture gets NAME.html and NAME.json; combined sessions, steps, clients and findings tables (CSV and Parquet, with a capture column) and an index.html link them all.  A capture that cannot be read is listed with its error and the batch goes on; the exit status is 0 when at least one capture was analysed, 2 when none could be.  Files are taken when their content is pcap, pcapng, Network Monitor or gzip, or their name ends in .pcap, .pcapng, .cap, .saz or .har; Windows traces (.etl, .matp) are listed with how to convert them.  Without --keylog, a NAME.keylog next to a capture is used for it.

[bold]Examples[/bold]

  lyncpcap batch captures/ --output reports/

  lyncpcap batch monday.pcapng tuesday.pcapng.gz --output reports/ --jobs 4
"""


def looks_like_capture(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(CAPTURE_SUFFIXES) or name.endswith(tuple(s + ".gz" for s in CAPTURE_SUFFIXES)):
        return True
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(CAPTURE_MAGICS)


def capture_stem(path: Path) -> str:
    """`site/edge.pcapng.gz` → `edge`: the name without compression and capture suffixes."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in CAPTURE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return Path(name).stem or name


def find_captures(inputs: Sequence[Path], exclude: Path) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(capture, report name) pairs in a stable order, and the files skipped as not captures.

    Files named on the command line are always tried; in folders, files are picked by content
    or name.  Nothing under `exclude` (the output folder) is taken.
    """
    found: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    exclude = exclude.resolve()
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                resolved = path.resolve()
                if resolved == exclude or exclude in resolved.parents:
                    continue
                if looks_like_capture(path):
                    rel = path.relative_to(item)
                    name = "__".join([*rel.parent.parts, capture_stem(path)])
                    found.append((path, name))
                else:
                    skipped.append(path)
        else:
            found.append((item, capture_stem(item)))
    seen: dict[str, int] = {}
    unique = []
    for path, name in found:
        n = seen.get(name, 0) + 1
        seen[name] = n
        unique.append((path, name if n == 1 else f"{name}-{n}"))
    return unique, skipped


def sibling_keylog(capture: Path) -> Path | None:
    candidate = capture.with_name(capture_stem(capture) + ".keylog")
    return candidate if candidate.is_file() else None


@dataclass(slots=True)
class Job:
    path: Path
    name: str
    folder: Path
    keylog: Path | None
    reveal: bool


@dataclass(slots=True)
class Result:
    job: Job
    error: str | None = None
    packets: int = 0
    warnings: int = 0
    sessions: list[Session] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def run_job(job: Job) -> Result:
    """Analyse one capture and write its reports (runs in a worker process)."""
    from lyncpcap.analysis import analyze
    from lyncpcap.report import exports, html

    try:
        analysis = analyze(job.path, keylog=job.keylog, jobs=1)  # batch shares the CPUs out by capture
    except CaptureError as exc:
        return Result(job, error=str(exc))
    except Exception as exc:  # one bad capture must not stop the batch
        return Result(job, error=f"{job.path}: internal error: {type(exc).__name__}: {exc}")
    try:
        (job.folder / f"{job.name}.html").write_text(
            html.report(analysis, job.reveal, title=f"Sign-in report: {job.path.name}"), encoding="utf-8"
        )
        (job.folder / f"{job.name}.json").write_text(exports.json_text(analysis, job.reveal), encoding="utf-8")
        frames = exports.tables(analysis, job.reveal)
    except Exception as exc:  # a report that cannot be written is that capture's failure
        return Result(job, error=f"{job.path}: internal error while writing the report: {type(exc).__name__}: {exc}")
    tables = {}
    for name in COMBINED:
        frame = frames[name].reset_index(drop=True)
        frame.insert(0, "capture", str(job.path))
        tables[name] = frame
    return Result(
        job,
        packets=sum(c.packets for c in analysis.captures),
        warnings=sum(len(c.warnings) for c in analysis.captures),
        sessions=list(analysis.session_list),
        findings=[f.id for f in analysis.finding_list],
        tables=tables,
    )


def run_all(jobs: Sequence[Job], workers: int, quiet: bool) -> list[Result]:
    results: dict[int, Result] = {}
    with count_progress(len(jobs), "captures", quiet) as advance:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = run_job(job)
                advance()
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                futures: dict[Future[Result], int] = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        results[i] = future.result()
                    except BrokenProcessPool:
                        results[i] = Result(jobs[i], error=f"{jobs[i].path}: the worker process died while reading it")
                    advance()
    return [results[i] for i in range(len(jobs))]


def _combine(frames: list[pd.DataFrame], dtypes: dict[str, object]) -> pd.DataFrame:
    import pandas as pd

    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["capture", *dtypes])
    combined["capture"] = combined["capture"].astype("string")
    for column, dtype in dtypes.items():
        if column in combined:
            combined[column] = combined[column].astype(dtype)  # type: ignore[call-overload]
    return combined


@app.command("batch", help=HELP, no_args_is_help=True)
def batch_command(
    inputs: Annotated[
        list[Path], typer.Argument(metavar="DIR_OR_FILE", help="folders (searched recursively) and capture files",
                                   show_default=False)
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="DIR", show_default=False, help="folder for the reports")
    ],
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="captures analysed in parallel (default: CPU count)")] = 0,
    keylog: KeylogOption = None,
    reveal_secrets: RevealOption = False,
    quiet: QuietOption = False,
) -> None:
    from lyncpcap import sessions as session_rules
    from lyncpcap.report import exports, frames, html, view

    keylog = checked_keylog(keylog)
    if jobs < 0:
        raise UsageProblem(f"--jobs {jobs}: must be 1 or more (0 for one per CPU)")
    if output.exists() and not output.is_dir():
        raise UsageProblem(f"--output {output}: exists and is not a folder")
    found, skipped = find_captures(inputs, output)
    if not found:
        raise UsageProblem(f"no capture files in {', '.join(map(str, inputs))}")
    output.mkdir(parents=True, exist_ok=True)
    workers = jobs or os.cpu_count() or 1
    job_list = [Job(path, name, output, keylog or sibling_keylog(path), reveal_secrets) for path, name in found]
    results = run_all(job_list, workers, quiet)

    good = [r for r in results if r.error is None]
    written: list[str] = []
    dtype_maps: dict[str, dict[str, object]] = {
        "sessions": frames.SESSION_DTYPES,
        "steps": frames.STEP_DTYPES,
        "clients": frames.CLIENT_DTYPES,
        "findings": frames.FINDING_DTYPES,
    }
    for name in COMBINED:
        combined = _combine([r.tables[name] for r in good], dtype_maps[name])
        (output / f"{name}.csv").write_text(exports.csv_text(combined), encoding="utf-8")
        exports.write_parquet(combined, output / f"{name}.parquet")
        written += [f"{name}.csv", f"{name}.parquet"]

    entries = []
    for r in results:
        counts = view.outcome_counts(r.sessions)
        entries.append(
            html.IndexEntry(
                name=r.job.name,
                path=str(r.job.path),
                error=r.error,
                html=f"{r.job.name}.html" if r.error is None else None,
                json=f"{r.job.name}.json" if r.error is None else None,
                packets=r.packets,
                sessions=len(r.sessions),
                succeeded=counts["success"],
                failed=counts["failure"],
                incomplete=counts["incomplete"],
                findings=r.findings,
                warnings=r.warnings,
            )
        )
    everyone = [s for r in good for s in r.sessions]
    clients = view.client_rows_from(session_rules.client_summary(everyone)) if everyone else []
    index = output / "index.html"
    index.write_text(html.index_page(entries, clients, written, [str(p) for p in skipped]), encoding="utf-8")

    for r in results:
        if r.error is not None:
            note(f"lyncpcap: warning: {r.error}")
    if not good:
        raise UsageProblem(f"none of the {len(results)} capture(s) could be read (see {index})")
    note(f"analysed {len(good)} of {len(results)} capture(s); open {index}", quiet)
