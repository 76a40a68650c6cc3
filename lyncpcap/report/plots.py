"""Timeline pictures (matplotlib): one session's steps, or every session of a capture.

Figures are built on `matplotlib.figure.Figure` directly (never pyplot), so no display or GUI
backend is touched; PNG and SVG come from the Agg and SVG canvases.  Figure heights grow with the
number of rows and legends sit outside the axes, so 1 row and 50 rows are both readable.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lyncpcap.model import STEPS, Session
from lyncpcap.report import view

Align = Literal["auto", "start", "clock"]

WIDTH_IN = 11.0
ROW_IN = 0.27
#: above this many rows, only every n-th row (and every failure) keeps its label
MAX_LABELS = 60
#: "auto" aligns sessions at their start when the capture spans this many times the longest session
AUTO_START_RATIO = 25.0
LABEL_FONT = 8.0
#: characters of a 9.5 pt title line that fit across WIDTH_IN
TITLE_CHARS = 140


def _unit(span_s: float) -> tuple[str, float]:
    """Axis unit for a span: (name, seconds per unit)."""
    if span_s < 2:
        return "ms", 0.001
    if span_s < 300:
        return "s", 1.0
    if span_s < 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _time_axis(ax: Axes, span_s: float, label: str) -> float:
    """Label the x axis in a unit that suits `span_s`; returns the divisor to apply to seconds."""
    name, per = _unit(span_s)
    ax.set_xlabel(f"{label} ({name})", fontsize=LABEL_FONT + 1)
    ax.set_xlim(0, (span_s if span_s > 0 else 0.001) * 1.02 / per)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(axis="x", labelsize=LABEL_FONT)
    return per


_MARKERS = {"fatal": "X", "refused": "o"}
_MARKER_LABELS = {"fatal": "the session failed here", "refused": "refused, the session went on"}


def _step_legend(fig: Figure, steps: Sequence[str], states: set[str]) -> None:
    present = [s for s in STEPS if s in set(steps)]
    handles: list[Patch | Line2D] = [Patch(facecolor=view.STEP_COLOURS[s], label=s) for s in present]
    for state in ("fatal", "refused"):
        if state in states:
            handles.append(
                Line2D([], [], marker=_MARKERS[state], color="none", markerfacecolor=view.STATE_COLOURS[state],
                       markeredgecolor="white", markersize=9, label=_MARKER_LABELS[state])
            )
    if handles:
        # as few rows as the width allows, with the entries spread evenly over them
        room = WIDTH_IN * 72 * 0.9
        used = sum(len(str(h.get_label())) * LABEL_FONT * 0.62 + 3.2 * LABEL_FONT for h in handles)
        rows = max(1, math.ceil(used / room))
        fig.legend(handles=handles, loc="outside lower center", ncols=math.ceil(len(handles) / rows),
                   fontsize=LABEL_FONT, frameon=False)


def _min_width(span_s: float) -> float:
    """Bars shorter than this are drawn this wide, so a 1 ms DNS answer is still visible."""
    return max(span_s, 0.001) * 0.004


def session_figure(session: Session, reveal: bool = False) -> Figure:
    """One session: a bar per step on a time axis from the session start, coloured by step."""
    steps = session.steps
    rows = max(1, len(steps))
    fig = Figure(figsize=(WIDTH_IN, 1.7 + ROW_IN * rows + (0.25 if session.failure else 0)), layout="constrained")
    ax = fig.add_subplot()
    span = max((st.end - session.start for st in steps), default=0.0)
    per = _time_axis(ax, span, "time since the session started")
    minw = _min_width(span)
    states = view.step_states(session)
    labels: list[str] = []
    for y, (st, state) in enumerate(zip(steps, states, strict=True)):
        left = max(0.0, st.time - session.start)
        width = max(st.duration, minw)
        bad = state != "ok"
        ax.barh(y, width / per, left=left / per, height=0.62, color=view.STEP_COLOURS.get(st.step, "#999999"),
                edgecolor=view.STATE_COLOURS[state] if bad else "none", linewidth=1.6 if bad else 0)
        if bad:
            ax.plot([(left + width) / per], [y], marker=_MARKERS[state], color=view.STATE_COLOURS[state],
                    markeredgecolor="white", markersize=9, zorder=5)
        labels.append(f"{y + 1:>2} {st.step:<12} {view.arrow_label(st, 54)}")
    ax.set_ylim(rows - 0.5, -0.5)
    # equal-length monospace labels, so the right-aligned tick labels read as left-aligned columns
    widest = max((len(x) for x in labels), default=0)
    ax.set_yticks(range(len(steps)), [x.ljust(widest) for x in labels], family="monospace", fontsize=LABEL_FONT)
    for tick, state in zip(ax.get_yticklabels(), states, strict=False):
        tick.set_color(view.STATE_COLOURS[state])
    # durations on the right, where they can never collide with bars or the other labels
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(len(steps)), [view.ms(st.duration) for st in steps], fontsize=LABEL_FONT)
    right.tick_params(length=0)
    title = (f"{session.id}  {view.user_text(session)} · {view.client_label(session.client_kind, session.location)} · "
             f"{view.protocol_label(session.auth_protocol)} · {session.outcome} · {view.ms(session.duration)}")
    lines = [view.truncate(title, TITLE_CHARS)]
    if session.failure:
        lines.append(view.truncate("✖ failed at " + view.failure_text(session), TITLE_CHARS))
    fig.suptitle("\n".join(lines), fontsize=LABEL_FONT + 1.5, x=0.01, ha="left",
                 color=view.OUTCOME_COLOURS.get(session.outcome, "black"))
    if not steps:
        ax.text(0.5, 0.5, "no steps", transform=ax.transAxes, ha="center", va="center", color="#777777")
    _step_legend(fig, [st.step for st in steps], set(states) - {"ok"})
    return fig


def _choose_align(sessions: Sequence[Session], align: Align) -> Literal["start", "clock"]:
    if align != "auto":
        return align
    if len(sessions) <= 1:
        return "clock"
    span = max(s.end for s in sessions) - min(s.start for s in sessions)
    longest = max(max(s.duration for s in sessions), 1.0)
    return "start" if span > AUTO_START_RATIO * longest else "clock"


def _cut(sessions: Sequence[Session], span: float) -> float | None:
    """Where to cut the time axis so a few very long sessions do not squash all the others."""
    if len(sessions) < 4:
        return None
    durations = sorted(s.duration for s in sessions)
    p90 = durations[math.ceil(0.9 * len(durations)) - 1]
    if p90 <= 0 or span <= 4 * p90:
        return None
    return _nice(p90 * 1.5)


def _nice(x: float) -> float:
    """The next round number at or above x: 1, 2, 2.5 or 5 times a power of ten."""
    power = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= x:
            return m * power
    return 10 * power


def _session_label(s: Session, mode: str, days: bool) -> str:
    """`s3 CONTOSO\\carol · Lync 2013 desktop`; with the start time when rows are aligned at their start."""
    when = ""
    if mode == "start":
        when = view.stamp(s.start)[5:19] if days else view.clock(s.start)[:8]
        when += " "
    return view.truncate(f"{s.id} {when}{view.user_text(s)} · {s.client_kind}", 62)


def capture_figure(sessions: Sequence[Session], *, align: Align = "auto", title: str | None = None) -> Figure:
    """Every session as a row; its steps as coloured segments; failed sessions marked.

    `align="clock"` keeps real time (who signed in when, a spray's rhythm); `"start"` lines
    sessions up at their first step so their durations compare; `"auto"` picks `start` when the
    sessions are short against the time the capture spans.
    """
    sessions = sorted(sessions, key=lambda s: (s.start, s.id))
    rows = max(1, len(sessions))
    fig = Figure(figsize=(WIDTH_IN, 1.9 + ROW_IN * rows), layout="constrained")
    ax = fig.add_subplot()
    if not sessions:
        ax.text(0.5, 0.5, "No sign-in sessions found in this capture", transform=ax.transAxes, ha="center",
                va="center", fontsize=LABEL_FONT + 2, color="#555555")
        ax.set_yticks([])
        ax.set_xticks([])
        if title:
            fig.suptitle(view.truncate(title, TITLE_CHARS), fontsize=LABEL_FONT + 1.5, x=0.01, ha="left")
        return fig
    mode = _choose_align(sessions, align)
    origin = min(s.start for s in sessions)
    base = {s.id: (s.start if mode == "start" else origin) for s in sessions}
    span = max(max([s.end, *(st.end for st in s.steps)]) - base[s.id] for s in sessions)
    cut = _cut(sessions, span) if mode == "start" else None
    shown = cut if cut is not None else span
    if mode == "start":
        per = _time_axis(ax, shown, "time since each session started")
    else:
        per = _time_axis(ax, shown, f"time since {view.stamp(origin)}")
    minw = _min_width(shown)
    edge = shown / per  # just inside the axis (its limit is 2 % further), clear of the right labels
    any_failure = False
    clipped = 0
    bar_rows: list[int] = []
    lefts: list[float] = []
    widths: list[float] = []
    colours: list[str] = []
    spans: list[list[tuple[float, float]]] = []
    for y, s in enumerate(sessions):
        zero = base[s.id]
        spans.append([((s.start - zero) / per, y), (min((s.end - zero) / per, edge), y)])
        for st in s.steps:
            bar_rows.append(y)
            lefts.append((st.time - zero) / per)
            widths.append(max(st.duration, minw) / per)
            colours.append(view.STEP_COLOURS.get(st.step, "#999999"))
    # one collection each for the session lines and the step bars: hundreds of steps stay fast
    ax.add_collection(LineCollection(spans, colors="#bbbbbb", linewidths=0.8, zorder=1))
    if bar_rows:
        ax.barh(bar_rows, widths, left=lefts, height=0.6, color=colours, zorder=2)
    failed: list[tuple[float, int]] = []
    longer: list[int] = []
    for y, s in enumerate(sessions):
        zero = base[s.id]
        bad = view.failed_step(s)
        if bad is not None:
            # a failure past the cut sits just inside it, beside the ▶ that marks the cut row
            failed.append((min((bad.time - zero + max(bad.duration, minw)) / per, edge * 0.975), y))
        if cut is not None and s.end - zero > cut * 1.02:
            longer.append(y)
    if failed:
        any_failure = True
        ax.plot([x for x, _ in failed], [y for _, y in failed], linestyle="none", marker=_MARKERS["fatal"],
                color=view.FAILURE_COLOUR, markeredgecolor="white", markersize=8, zorder=5, clip_on=False)
    if longer:
        clipped = len(longer)
        ax.plot([edge * 1.02] * len(longer), longer, linestyle="none", marker=">", color="#57606a", markersize=6, zorder=4,
                clip_on=False)
    every = max(1, math.ceil(len(sessions) / MAX_LABELS))
    ticks = list(range(0, len(sessions), every))
    days = view.stamp(sessions[0].start)[:10] != view.stamp(sessions[-1].start)[:10]
    ax.set_yticks(ticks, [_session_label(sessions[y], mode, days) for y in ticks], fontsize=LABEL_FONT)
    for tick, y in zip(ax.get_yticklabels(), ticks, strict=False):
        tick.set_color(view.OUTCOME_COLOURS.get(sessions[y].outcome, "black"))
    right = ax.secondary_yaxis("right")
    right.set_yticks(ticks, [f"{sessions[y].location} · {sessions[y].outcome} · {view.ms(sessions[y].duration)}"
                             for y in ticks],
                     fontsize=LABEL_FONT)
    for tick, y in zip(right.get_yticklabels(), ticks, strict=False):
        tick.set_color(view.OUTCOME_COLOURS.get(sessions[y].outcome, "black"))
    right.tick_params(length=0)
    ax.set_ylim(len(sessions) - 0.5, -0.5)
    counts = view.outcome_counts(list(sessions))
    heading = title or "Sign-in sessions"
    heading += (f" — {len(sessions)} session(s): {counts['success']} succeeded, {counts['failure']} failed, "
                f"{counts['incomplete']} incomplete")
    if every > 1:
        heading += f"; every {every}th row labelled"
    if clipped:
        heading += f"; axis cut at {shown:g} s, {clipped} longer session(s) marked ▶"
    fig.suptitle(view.truncate(heading, TITLE_CHARS), fontsize=LABEL_FONT + 1.5, x=0.01, ha="left")
    _step_legend(fig, [st.step for s in sessions for st in s.steps], {"fatal"} if any_failure else set())
    return fig


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """Render a figure to PNG or SVG bytes (the format decides the canvas; nothing is shown)."""
    buffer = io.BytesIO()
    metadata = {"Software": "lyncpcap"} if fmt == "png" else None
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()
