"""Helpers for the report tests: the sample captures, cached analyses, text-overlap checks, the CLI."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

import lyncpcap
from lyncpcap.analysis import Analysis
from lyncpcap.model import Session

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_captures"


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".saz", ".har")


def sample_captures() -> list[Path]:
    """Every sample capture (pcap, pcapng, SAZ, HAR), the TLS twins included (without their keys
    they analyse to no sessions)."""
    return sorted(p for p in SAMPLES.iterdir() if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES))


def truth_of(capture: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(capture.with_name(capture.name.rsplit(".", 1)[0] + ".truth.json").read_text())
    return data


@cache
def analysis_of(name: str) -> Analysis:
    """The analysis of a sample, by file name, computed once per test process."""
    return lyncpcap.analyze(SAMPLES / name)


def all_sessions() -> list[Session]:
    return [s for p in sample_captures() for s in analysis_of(p.name).session_list]


def many_sessions(count: int) -> list[Session]:
    """`count` sessions: the samples' sessions, repeated an hour apart with new ids as needed."""
    base = all_sessions()
    out: list[Session] = []
    round_ = 0
    while len(out) < count:
        for s in base:
            if len(out) == count:
                break
            shift = 3600.0 * round_
            steps = [dataclasses.replace(st, time=st.time + shift, end=st.end + shift) for st in s.steps]
            out.append(dataclasses.replace(s, id=f"s{len(out) + 1}", start=s.start + shift, end=s.end + shift,
                                           steps=steps))
        round_ += 1
    return out


def _undrawn_tick_labels(fig: Figure) -> set[int]:
    """Tick labels matplotlib keeps but does not draw, because their tick is outside the view."""
    hidden: set[int] = set()
    pending: list[Any] = list(fig.axes)  # axes and their child axes (the secondary y axes)
    while pending:
        ax = pending.pop()
        pending.extend(ax.child_axes)
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = min(limits), max(limits)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    hidden.update({id(tick.label1), id(tick.label2)})
    return hidden


def texts(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every drawn, non-empty text of a figure with its box in display pixels."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    hidden = _undrawn_tick_labels(fig)
    found = []
    for artist in fig.findobj(Text):
        if not artist.get_visible() or not artist.get_text().strip() or id(artist) in hidden:
            continue
        found.append((artist.get_text(), artist.get_window_extent(renderer)))
    return found


def overlaps(fig: Figure, slack: float = 1.0, items: list[tuple[str, Bbox]] | None = None) -> list[str]:
    """Pairs of texts that overlap, and texts that stick out of the figure; empty when clean.

    `items` are the figure's `texts()` when the caller has them already (drawing is the slow part).
    """
    items = texts(fig) if items is None else items
    width, height = fig.canvas.get_width_height()
    problems = []
    for text, box in items:
        if box.x0 < -slack or box.y0 < -slack or box.x1 > width + slack or box.y1 > height + slack:
            problems.append(f"outside the figure: {text!r} {box.bounds}")
    for i, (a, box_a) in enumerate(items):
        shrunk_a = Bbox.from_extents(box_a.x0 + slack, box_a.y0 + slack, box_a.x1 - slack, box_a.y1 - slack)
        for b, box_b in items[i + 1:]:
            if shrunk_a.overlaps(box_b):
                problems.append(f"overlap: {a!r} and {b!r}")
    return problems


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    from lyncpcap.cli import main

    with pytest.raises(SystemExit) as stop:
        main(list(args))
    out = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err
