"""What the commands share: their options, the progress bar, choosing a session, writing output.

Data goes to stdout or `--output`; the progress bar and notes go to stderr, and the bar is drawn
only when stderr is a terminal (so logs and pipes never see its control codes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from lyncpcap.commands import UsageProblem, err
from lyncpcap.model import Session

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis
    from lyncpcap.read.tshark import RsaKey

KeylogOption = Annotated[
    Path | None,
    typer.Option("--keylog", metavar="FILE", show_default=False,
                 help="TLS key log (SSLKEYLOGFILE format) to decrypt HTTPS in the capture(s)"),
]
RsaKeyOption = Annotated[
    list[str] | None,
    typer.Option("--rsa-key", metavar="FILE[@ADDRESS[:PORT]]", show_default=False,
                 help="a server's RSA private key (PEM) to decrypt TLS that used RSA key exchange; repeatable; "
                      "@ADDRESS[:PORT] (IPv6 in brackets) ties it to one server"),
]
RevealOption = Annotated[
    bool,
    typer.Option("--reveal-secrets", help="show passwords, tokens, tickets and cookies instead of «redacted sha256:…»"),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="PATH", show_default=False, help="write here instead of stdout"),
]
JobsOption = Annotated[
    int | None,
    typer.Option("--jobs", "-j", min=1, show_default=False,
                 help="processes for one large capture (default: one per CPU, up to 4, from 48 MB; "
                      "1: a single process); the results are the same"),
]
SessionOption = Annotated[
    str | None,
    typer.Option("--session", "-s", metavar="ID", show_default=False, help="the session to show, e.g. s2"),
]


def choice(option: str, choices: Sequence[str]) -> Callable[[str | None], str | None]:
    """A typer callback that accepts one of `choices` (any case) and otherwise stops with exit 2.

    The check is ours rather than typer's `Enum` choice, so a typo gets the same one-line usage
    error and exit status as every other usage problem.
    """

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.lower()
        if lowered not in choices:
            raise UsageProblem(f"{option} {value}: choose one of {', '.join(choices)}")
        return lowered

    return check


def checked_keylog(path: Path | None) -> Path | None:
    """The key log file, or a usage error (exit 2) naming it when it cannot be used."""
    if path is None:
        return None
    if not path.exists():
        raise UsageProblem(f"--keylog {path}: no such file")
    if not path.is_file():
        raise UsageProblem(f"--keylog {path}: not a file")
    if not os.access(path, os.R_OK):
        raise UsageProblem(f"--keylog {path}: permission denied")
    return path


class ByteProgress:
    """Turns `analyze(progress=)` calls into bytes read of all captures.

    The engine reports the position in the *current* file; a file is done when its position
    reaches its size (or the position falls back, which means the next file has started).
    """

    def __init__(self, sizes: Sequence[int], update: Callable[[int], None]) -> None:
        self.sizes = list(sizes)
        self.update = update
        self.index = 0
        self.finished = 0
        self.last = 0

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def __call__(self, position: int) -> None:
        if self.index < len(self.sizes) and position < self.last:
            self._next()  # the position fell back: the previous file ended short of its size
        if self.index >= len(self.sizes):
            self.update(self.total)
            return
        size = self.sizes[self.index]
        done = self.finished + min(position, size)
        if position >= size:
            self._next()
        else:
            self.last = position
        self.update(done)

    def _next(self) -> None:
        self.finished += self.sizes[self.index]
        self.index += 1
        self.last = 0


def _bar_wanted(quiet: bool, console: Console) -> bool:
    return not quiet and console.is_terminal


@contextmanager
def byte_progress(paths: Sequence[Path], quiet: bool, console: Console = err) -> Iterator[Callable[[int], None] | None]:
    """A progress callback for `lyncpcap.analyze`, or None when no bar should be drawn."""
    if not _bar_wanted(quiet, console):
        yield None
        return
    sizes = [p.stat().st_size if p.is_file() else 0 for p in paths]
    label = paths[0].name if len(paths) == 1 else f"{len(paths)} captures"
    with Progress(
        TextColumn("[bold]reading[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=sum(sizes))
        yield ByteProgress(sizes, lambda done: bar.update(task, completed=done))


@contextmanager
def count_progress(total: int, what: str, quiet: bool, console: Console = err) -> Iterator[Callable[[], None]]:
    """`advance()` once per item done; draws `what 3/20` on a terminal."""
    if not _bar_wanted(quiet, console):
        yield lambda: None
        return
    with Progress(
        TextColumn(f"[bold]{what}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def checked_rsa_keys(specs: Sequence[str] | None) -> list[RsaKey]:
    """The --rsa-key values, or a usage error (exit 2) naming the one that cannot be used."""
    from lyncpcap.read.tshark import RsaKey

    keys = []
    for spec in specs or ():
        try:
            key = RsaKey.parse(spec)
        except ValueError as exc:
            raise UsageProblem(f"--rsa-key {exc}") from None
        if not key.path.is_file():
            raise UsageProblem(f"--rsa-key {spec}: no such file {key.path}")
        keys.append(key)
    return keys


def run_analysis(
    captures: Sequence[Path],
    keylog: Path | None,
    quiet: bool,
    rsa_keys: Sequence[str] | None = None,
    jobs: int | None = None,
) -> Analysis:
    """Analyse `captures` together, with a progress bar on a terminal."""
    from lyncpcap.analysis import analyze

    keylog = checked_keylog(keylog)
    keys = checked_rsa_keys(rsa_keys)
    with byte_progress(captures, quiet) as progress:
        return analyze(list(captures), keylog=keylog, rsa_keys=keys, progress=progress, jobs=jobs)


def pick_sessions(analysis: Analysis, sid: str | None) -> list[Session]:
    """The session named `sid` (a usage error listing the real ids if there is none), or all."""
    if sid is None:
        return list(analysis.session_list)
    for s in analysis.session_list:
        if s.id == sid:
            return [s]
    known = ", ".join(s.id for s in analysis.session_list) or "none"
    raise UsageProblem(f"--session {sid}: no such session (sessions: {known})")


def one_session(analysis: Analysis, sid: str | None, what: str, quiet: bool = False) -> Session:
    """One session: `sid`; else the only one, or the first that failed (the one a ticket is about),
    or the first — saying on stderr which one was taken and what else there is."""
    chosen = pick_sessions(analysis, sid)
    if not chosen:
        raise UsageProblem(f"no sign-in sessions in the capture to draw a {what}")
    if len(chosen) == 1:
        return chosen[0]
    failed = [s for s in chosen if s.outcome == "failure"]
    pick = failed[0] if failed else chosen[0]
    why = "the first that failed" if failed else "the first"
    others = ", ".join(s.id for s in chosen if s is not pick)
    note(f"{what} of {pick.id}, {why} of the sessions; for {others} use --session", quiet)
    return pick


def write_output(data: str | bytes, output: Path | None) -> None:
    """Write to `output`, or to stdout (bytes only to a file or a pipe, never a terminal)."""
    if output is not None:
        if output.is_dir():
            raise UsageProblem(f"--output {output}: is a directory")
        if isinstance(data, bytes):
            output.write_bytes(data)
        else:
            output.write_text(data, encoding="utf-8")
        return
    if isinstance(data, bytes):
        if sys.stdout.isatty():
            raise UsageProblem("refusing to write binary data to the terminal: use --output FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(data)
        sys.stdout.flush()


class _Gathered:
    """Gathers small writes into large ones: stdout may be unbuffered (PYTHONUNBUFFERED), and a
    JSON encoder writes a large document in millions of pieces."""

    def __init__(self, out: TextIO, size: int = 1 << 20) -> None:
        self.out = out
        self.size = size
        self.parts: list[str] = []
        self.pending = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.pending += len(text)
        if self.pending >= self.size:
            self.flush()
        return len(text)

    def flush(self) -> None:
        self.out.write("".join(self.parts))
        self.parts.clear()
        self.pending = 0
        self.out.flush()


def write_stream(write: Callable[[TextIO], None], output: Path | None) -> None:
    """`write_output` for text that `write` produces piece by piece into the file it is given."""
    if output is not None:
        if output.is_dir():
            raise UsageProblem(f"--output {output}: is a directory")
        with output.open("w", encoding="utf-8") as f:
            write(f)
        return
    out = _Gathered(sys.stdout)
    write(cast(TextIO, out))
    out.flush()


def note(message: str, quiet: bool = False) -> None:
    """A one-line remark on stderr (what was written where, a capture a batch could not read)."""
    if not quiet:
        sys.stderr.write(" ".join(message.split()) + "\n")
        sys.stderr.flush()


def stdout_console(output: Path | None) -> Console:
    """A console for the table view: colours on a terminal, plain wide text elsewhere."""
    if output is None and sys.stdout.isatty():
        return Console(highlight=False, emoji=False)
    return Console(file=sys.stdout, width=140, color_system=None, highlight=False, emoji=False, force_terminal=False)
