"""The pictures: every text readable (inside the figure, overlapping nothing) at 1, 50 and 150 rows.

The 1- and 55-session timelines are also written to artifacts/plots/ for a person to look at.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from reportkit import ROOT, analysis_of, many_sessions, overlaps, sample_captures, texts

from lyncpcap.report import ladder, plots

ARTIFACTS = ROOT / "artifacts" / "plots"


def title_of(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def test_the_overlap_check_sees_overlaps_and_overflow() -> None:
    fig = Figure(figsize=(4, 2))
    fig.text(0.1, 0.5, "first label")
    fig.text(0.12, 0.5, "second label")
    fig.text(0.95, 0.1, "runs off the right edge")
    problems = overlaps(fig)
    assert any("overlap" in p for p in problems)
    assert any("outside the figure" in p for p in problems)
    clean = Figure(figsize=(4, 2))
    clean.text(0.1, 0.7, "one")
    clean.text(0.1, 0.2, "two")
    assert overlaps(clean) == []


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_session_timelines_and_ladders_are_readable(capture: Path) -> None:
    for session in analysis_of(capture.name).session_list:
        timeline = plots.session_figure(session)
        drawn = texts(timeline)
        assert overlaps(timeline, items=drawn) == [], session.id
        labels = [t for t, _ in drawn]
        rows = [t.get_text() for t in timeline.axes[0].get_yticklabels() if t.get_text().strip()]
        assert len(rows) == len(session.steps)  # one labelled row per step
        assert all(st.step in row for st, row in zip(session.steps, rows, strict=True))
        if session.failure:
            assert any("failed at" in t for t in labels)
            assert "the session failed here" in labels
        diagram = ladder.figure(session)
        drawn = texts(diagram)
        assert overlaps(diagram, items=drawn) == [], session.id
        assert sum(1 for t, _ in drawn if "→" in t) == len(session.steps)  # one labelled arrow per step


@pytest.mark.parametrize("capture", sample_captures(), ids=lambda p: p.stem)
def test_capture_timeline_is_readable(capture: Path) -> None:
    analysis = analysis_of(capture.name)
    fig = plots.capture_figure(analysis.session_list, title=capture.name)
    drawn = texts(fig)
    assert overlaps(fig, items=drawn) == []
    if not analysis.session_list:
        assert any("No sign-in sessions" in t for t, _ in drawn)


@pytest.mark.parametrize("count", [1, 55, 150])
def test_timeline_of_many_sessions(count: int) -> None:
    sessions = many_sessions(count)
    fig = plots.capture_figure(sessions)
    assert overlaps(fig) == []
    ax = fig.axes[0]
    labelled = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert 1 <= len(labelled) <= plots.MAX_LABELS
    if count <= plots.MAX_LABELS:
        assert len(labelled) == count
    else:
        assert f"one row in {math.ceil(count / plots.MAX_LABELS)} labelled" in title_of(fig)
    height = fig.get_size_inches()[1]
    assert height >= plots.ROW_IN * count
    if count in (1, 55):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"timeline-{count}-sessions.png").write_bytes(plots.figure_bytes(fig))


def test_height_follows_the_rows() -> None:
    small = plots.capture_figure(many_sessions(1)).get_size_inches()[1]
    large = plots.capture_figure(many_sessions(50)).get_size_inches()[1]
    assert large > small + 40 * plots.ROW_IN


def test_long_sessions_do_not_squash_the_others() -> None:
    sessions = many_sessions(41)  # one 90 s session among sub-second ones
    fig = plots.capture_figure(sessions, align="start")
    longest = max(s.duration for s in sessions)
    assert fig.axes[0].get_xlim()[1] < longest  # the axis is cut, the long rows are marked
    assert "cut at" in title_of(fig)


def test_png_and_svg_bytes() -> None:
    fig = plots.capture_figure(many_sessions(3))
    png = plots.figure_bytes(fig, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = plots.figure_bytes(plots.capture_figure(many_sessions(3)), "svg")
    assert b"<svg" in svg[:1000]
