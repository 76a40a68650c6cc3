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
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lyncpcap.model import STEPS, Session
from lyncpcap.report import view

Align = Literal["auto", "start", "clock"]

WIDTH_IN = 11.0
ROW_IN = 0.27
#: above this many rows, only every n-th row keeps its label
MAX_LABELS = 60
#: "auto" aligns sessions at their start when the capture spans this many times the longest session
AUTO_START_RATIO = 25.0
LABEL_FONT = 8.0
TITLE_FONT = 9.5
#: characters of a title line that fit across WIDTH_IN
TITLE_CHARS = 140
MARGIN_IN = 0.12
#: room under the plot for tick labels and the axis label
XAXIS_IN = 0.5
LEGEND_ROW_IN = 0.24


class _Measure:
    """Text widths from the font itself (no drawing), so margins fit the labels exactly.

    The layout is computed here instead of by matplotlib's constrained layout, which costs more
    than the rest of a figure; the report draws two figures per session.
    """

    def __init__(self) -> None:
        self.renderer = RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point

    def inches(self, text: str, size: float = LABEL_FONT, family: str = "sans-serif") -> float:
        if not text:
            return 0.0
        width, _, _ = self.renderer.get_text_width_height_descent(
            text, FontProperties(size=size, family=family), ismath=False
        )
        return float(width) / 72

    def widest(self, texts: Sequence[str], size: float = LABEL_FONT, family: str = "sans-serif") -> float:
        return max((self.inches(t, size, family) for t in texts), default=0.0)


_TICK_ROOM_IN = 9 / 72  # tick length and label pad


def _frame(
    rows: int, left_in: float, right_in: float, title_lines: int, legend_rows: int
) -> tuple[Figure, Axes, float]:
    """A figure sized for `rows` rows, its axes placed inside the measured margins."""
    top = MARGIN_IN + title_lines * TITLE_FONT * 1.35 / 72 + 0.1
    bottom = MARGIN_IN + legend_rows * LEGEND_ROW_IN + (0.12 if legend_rows else 0) + XAXIS_IN
    plot = ROW_IN * max(rows, 1) + 0.25
    height = top + bottom + plot
    fig = Figure(figsize=(WIDTH_IN, height))
    left = MARGIN_IN + left_in + _TICK_ROOM_IN
    right = MARGIN_IN + right_in + (_TICK_ROOM_IN if right_in else 0)
    ax = fig.add_axes((left / WIDTH_IN, bottom / height, 1 - (left + right) / WIDTH_IN, plot / height))
    return fig, ax, height


def _title(fig: Figure, height: float, text: str, colour: str = "black") -> None:
    fig.text(MARGIN_IN / WIDTH_IN, 1 - MARGIN_IN / height, text, ha="left", va="top", fontsize=TITLE_FONT,
             color=colour, linespacing=1.35)


def _right_labels(ax: Axes, rows: Sequence[int], labels: Sequence[str], colours: Sequence[str]) -> None:
    """Labels right of the plot, one per row (where they cannot collide with bars)."""
    transform, va, ha = ax.get_yaxis_text2_transform(7)
    for y, label, colour in zip(rows, labels, colours, strict=True):
        ax.text(1, y, label, transform=transform, va=va, ha=ha, fontsize=LABEL_FONT, color=colour)


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


def _legend_handles(steps: Sequence[str], states: set[str]) -> list[Patch | Line2D]:
    present = [s for s in STEPS if s in set(steps)]
    handles: list[Patch | Line2D] = [Patch(facecolor=view.STEP_COLOURS[s], label=s) for s in present]
    for state in ("fatal", "refused"):
        if state in states:
            handles.append(
                Line2D([], [], marker=_MARKERS[state], color="none", markerfacecolor=view.STATE_COLOURS[state],
                       markeredgecolor="white", markersize=9, label=_MARKER_LABELS[state])
            )
    return handles


def _legend_columns(handles: Sequence[Patch | Line2D], measure: _Measure) -> tuple[int, int]:
    """(columns, rows) of the fewest legend rows that fit across the figure."""
    if not handles:
        return 0, 0
    extra = 5.0 * LABEL_FONT / 72  # handle, pad and column spacing, in inches
    widths = [measure.inches(str(h.get_label())) + extra for h in handles]
    room = WIDTH_IN - 2 * MARGIN_IN - 0.3
    for rows in range(1, len(handles) + 1):
        columns = math.ceil(len(handles) / rows)
        # matplotlib fills a legend column by column
        total = sum(max(widths[c * rows:(c + 1) * rows]) for c in range(columns) if widths[c * rows:(c + 1) * rows])
        if total <= room:
            return columns, rows
    return 1, len(handles)


def _place_legend(fig: Figure, height: float, handles: Sequence[Patch | Line2D], columns: int) -> None:
    if handles:
        fig.legend(handles=list(handles), loc="lower center", bbox_to_anchor=(0.5, MARGIN_IN / height),
                   ncols=columns, fontsize=LABEL_FONT, frameon=False)


def _min_width(span_s: float) -> float:
    """Bars shorter than this are drawn this wide, so a 1 ms DNS answer is still visible."""
    return max(span_s, 0.001) * 0.004


def session_figure(session: Session, reveal: bool = False) -> Figure:
    """One session: a bar per step on a time axis from the session start, coloured by step."""
    steps = session.steps
    states = view.step_states(session)
    labels = [f"{y + 1:>2} {st.step:<12} {view.arrow_label(st, 54)}" for y, st in enumerate(steps)]
    widest = max((len(x) for x in labels), default=0)
    # equal-length monospace labels, so the right-aligned tick labels read as left-aligned columns
    labels = [x.ljust(widest) for x in labels]
    durations = [view.ms(st.duration) for st in steps]
    measure = _Measure()
    handles = _legend_handles([st.step for st in steps], set(states) - {"ok"})
    columns, legend_rows = _legend_columns(handles, measure)
    title = (f"{session.id}  {view.user_text(session)} · {view.client_label(session.client_kind, session.location)} · "
             f"{view.protocol_label(session.auth_protocol)} · {session.outcome} · {view.ms(session.duration)}")
    lines = [view.truncate(title, TITLE_CHARS)]
    if session.failure:
        lines.append(view.truncate("✖ failed at " + view.failure_text(session), TITLE_CHARS))
    fig, ax, height = _frame(len(steps), measure.widest(labels, family="monospace"), measure.widest(durations),
                             len(lines), legend_rows)
    span = max((st.end - session.start for st in steps), default=0.0)
    per = _time_axis(ax, span, "time since the session started")
    minw = _min_width(span)
    for y, (st, state) in enumerate(zip(steps, states, strict=True)):
        left = max(0.0, st.time - session.start)
        width = max(st.duration, minw)
        bad = state != "ok"
        ax.barh(y, width / per, left=left / per, height=0.62, color=view.STEP_COLOURS.get(st.step, "#999999"),
                edgecolor=view.STATE_COLOURS[state] if bad else "none", linewidth=1.6 if bad else 0)
        if bad:
            ax.plot([(left + width) / per], [y], marker=_MARKERS[state], color=view.STATE_COLOURS[state],
                    markeredgecolor="white", markersize=9, zorder=5)
    ax.set_ylim(max(len(steps), 1) - 0.5, -0.5)
    ax.set_yticks(range(len(steps)), labels, family="monospace", fontsize=LABEL_FONT)
    for tick, state in zip(ax.get_yticklabels(), states, strict=False):
        tick.set_color(view.STATE_COLOURS[state])
    _right_labels(ax, range(len(steps)), durations, [view.STATE_COLOURS[s] for s in states])
    _title(fig, height, "\n".join(lines), view.OUTCOME_COLOURS.get(session.outcome, "black"))
    if not steps:
        ax.text(0.5, 0.5, "no steps", transform=ax.transAxes, ha="center", va="center", color="#777777")
    _place_legend(fig, height, handles, columns)
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
    measure = _Measure()
    if not sessions:
        fig, ax, height = _frame(1, 0.0, 0.0, 1 if title else 0, 0)
        ax.text(0.5, 0.5, "No sign-in sessions found in this capture", transform=ax.transAxes, ha="center",
                va="center", fontsize=LABEL_FONT + 2, color="#555555")
        ax.set_yticks([])
        ax.set_xticks([])
        if title:
            _title(fig, height, view.truncate(title, TITLE_CHARS))
        return fig
    mode = _choose_align(sessions, align)
    origin = min(s.start for s in sessions)
    base = {s.id: (s.start if mode == "start" else origin) for s in sessions}
    span = max(max([s.end, *(st.end for st in s.steps)]) - base[s.id] for s in sessions)
    cut = _cut(sessions, span) if mode == "start" else None
    shown = cut if cut is not None else span
    longer = [y for y, s in enumerate(sessions) if cut is not None and s.end - base[s.id] > cut * 1.02]
    failing = [view.failed_step(s) for s in sessions]

    every = max(1, math.ceil(len(sessions) / MAX_LABELS))
    ticks = list(range(0, len(sessions), every))
    days = view.stamp(sessions[0].start)[:10] != view.stamp(sessions[-1].start)[:10]
    left_labels = [_session_label(sessions[y], mode, days) for y in ticks]
    right_labels = [f"{sessions[y].location} · {sessions[y].outcome} · {view.ms(sessions[y].duration)}" for y in ticks]
    colours = [view.OUTCOME_COLOURS.get(sessions[y].outcome, "black") for y in ticks]
    handles = _legend_handles([st.step for s in sessions for st in s.steps],
                              {"fatal"} if any(f is not None for f in failing) else set())
    columns, legend_rows = _legend_columns(handles, measure)
    counts = view.outcome_counts(list(sessions))
    heading = title or "Sign-in sessions"
    heading += (f" — {len(sessions)} session(s): {counts['success']} succeeded, {counts['failure']} failed, "
                f"{counts['incomplete']} incomplete")
    if every > 1:
        heading += f"; one row in {every} labelled"
    if longer:
        heading += f"; axis cut at {shown:g} s, {len(longer)} longer session(s) marked ▶"
    fig, ax, height = _frame(len(sessions), measure.widest(left_labels), measure.widest(right_labels), 1, legend_rows)

    if mode == "start":
        per = _time_axis(ax, shown, "time since each session started")
    else:
        per = _time_axis(ax, shown, f"time since {view.stamp(origin)}")
    minw = _min_width(shown)
    edge = shown / per  # just inside the axis (its limit is 2 % further), clear of the right labels
    bar_rows: list[int] = []
    lefts: list[float] = []
    widths: list[float] = []
    bar_colours: list[str] = []
    spans: list[list[tuple[float, float]]] = []
    for y, s in enumerate(sessions):
        zero = base[s.id]
        spans.append([((s.start - zero) / per, y), (min((s.end - zero) / per, edge), y)])
        for st in s.steps:
            bar_rows.append(y)
            lefts.append((st.time - zero) / per)
            widths.append(max(st.duration, minw) / per)
            bar_colours.append(view.STEP_COLOURS.get(st.step, "#999999"))
    # one collection for the session lines and one bar call for all steps: hundreds stay fast
    ax.add_collection(LineCollection(spans, colors="#bbbbbb", linewidths=0.8, zorder=1))
    if bar_rows:
        ax.barh(bar_rows, widths, left=lefts, height=0.6, color=bar_colours, zorder=2)
    # a failure past the cut sits just inside it, beside the ▶ that marks the cut row
    limit = edge * 0.975 if longer else edge
    failed = [(min((bad.time - base[s.id] + max(bad.duration, minw)) / per, limit), y)
              for y, (s, bad) in enumerate(zip(sessions, failing, strict=True)) if bad is not None]
    if failed:
        ax.plot([x for x, _ in failed], [y for _, y in failed], linestyle="none", marker=_MARKERS["fatal"],
                color=view.FAILURE_COLOUR, markeredgecolor="white", markersize=8, zorder=5, clip_on=False)
    if longer:
        ax.plot([edge * 1.02] * len(longer), longer, linestyle="none", marker=">", color="#57606a", markersize=6,
                zorder=4, clip_on=False)
    ax.set_ylim(len(sessions) - 0.5, -0.5)
    ax.set_yticks(ticks, left_labels, fontsize=LABEL_FONT)
    for tick, colour in zip(ax.get_yticklabels(), colours, strict=False):
        tick.set_color(colour)
    _right_labels(ax, ticks, right_labels, colours)
    _title(fig, height, view.truncate(heading, TITLE_CHARS))
    _place_legend(fig, height, handles, columns)
    return fig


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """Render a figure to PNG or SVG bytes (the format decides the canvas; nothing is shown)."""
    buffer = io.BytesIO()
    metadata = {"Software": "lyncpcap"} if fmt == "png" else None
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()
