"""Ladder (sequence) diagram of one session, drawn with matplotlib.

Lanes are the roles the steps reveal (client, reverse proxy, DNS resolver, front end, AD FS, KDC,
Edge / registrar: see `view.sequence`); each step is one arrow labelled `METHOD /path → status`.
The drawing works in inches, so a label's room is known before it is drawn and nothing overlaps.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from lyncpcap.model import Session
from lyncpcap.report import view

LANE_IN = 2.5  # distance between lanes
TIME_IN = 0.95  # the time column on the left
HEADER_IN = 0.95
ROW_IN = 0.34
FONT = 7.5
#: average advance of a DejaVu Sans character, in ems (generous, so estimates never overflow)
CHAR_EM = 0.62


def _chars(inches: float, size: float = FONT) -> int:
    return max(8, int(inches * 72 / (size * CHAR_EM)))


def figure(session: Session, reveal: bool = False) -> Figure:
    """The session's ladder diagram; time runs down, one row per step."""
    lanes, messages = view.sequence(session)
    index = {lane.key: i for i, lane in enumerate(lanes)}
    rows = max(1, len(messages))
    width = TIME_IN + LANE_IN * len(lanes) + 0.2
    height = HEADER_IN + ROW_IN * rows + 0.35
    fig = Figure(figsize=(max(width, 4.5), height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, max(width, 4.5))
    ax.set_ylim(height, 0)
    ax.axis("off")

    def x_of(key: str) -> float:
        return TIME_IN + LANE_IN * (index[key] + 0.5)

    bottom = height - 0.2
    for lane in lanes:
        x = x_of(lane.key)
        ax.plot([x, x], [HEADER_IN - 0.05, bottom], color="#b0b0b0", linewidth=1, zorder=1)
        box_w = LANE_IN - 0.25
        ax.add_patch(
            FancyBboxPatch((x - box_w / 2, 0.12), box_w, HEADER_IN - 0.3, boxstyle="round,pad=0.02",
                           facecolor="#f3f4f6", edgecolor="#8c959f", linewidth=0.8, zorder=2)
        )
        room = _chars(box_w - 0.1, FONT)
        ax.text(x, 0.30, view.truncate(lane.role, _chars(box_w - 0.1, FONT + 1)), ha="center", va="center",
                fontsize=FONT + 1, fontweight="bold", zorder=3)
        lines = [view.truncate(lane.name, room)] if lane.name else []
        lines.append(view.truncate(lane.key, room))
        ax.text(x, 0.52, "\n".join(lines), ha="center", va="top", fontsize=FONT - 0.5, color="#444444",
                linespacing=1.2, zorder=3)

    ax.text(0.12, HEADER_IN - 0.18, "time", ha="left", va="center", fontsize=FONT, color="#57606a",
            fontstyle="italic")
    states = view.step_states(session)
    for i, m in enumerate(messages):
        y = HEADER_IN + ROW_IN * (i + 0.72)
        state = states[i]
        bad = state != "ok"
        colour = view.STATE_COLOURS[state] if bad else view.STEP_COLOURS.get(m.step.step, "#333333")
        ax.text(0.12, y, view.offset(m.offset_s), ha="left", va="center", fontsize=FONT, family="monospace",
                color=view.STATE_COLOURS[state])
        if m.via is not None and m.via in index:
            # the hop before the reverse proxy is implied by X-Forwarded-For, not seen on the wire
            ax.annotate("", xy=(x_of(m.src), y), xytext=(x_of(m.via), y),
                        arrowprops={"arrowstyle": "-|>", "color": "#8c959f", "linestyle": (0, (3, 2)),
                                    "linewidth": 0.9, "shrinkA": 0, "shrinkB": 2})
        x0, x1 = x_of(m.src), x_of(m.dst)
        if x0 == x1:
            x1 = x0 + LANE_IN * 0.4  # talking to itself: a short stub, still visible
        ax.annotate("", xy=(x1, y), xytext=(x0, y),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": 1.8 if state == "fatal" else 1.1,
                                "shrinkA": 0, "shrinkB": 1})
        # a relayed request's label spans the whole hop, client to server
        start = x_of(m.via) if m.via is not None and m.via in index else x0
        span = max(abs(x1 - start), LANE_IN * 0.9) - 0.1
        mark = {"fatal": "✖ ", "refused": "! "}.get(state, "")
        label = mark + view.arrow_label(m.step, _chars(span) - len(mark))
        ax.text((start + x1) / 2, y - 0.045, label, ha="center", va="bottom", fontsize=FONT,
                color=view.STATE_COLOURS[state], fontweight="bold" if state == "fatal" else "normal",
                bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                zorder=4)
    if not messages:
        ax.text(width / 2, HEADER_IN + 0.2, "no steps", ha="center", va="center", color="#777777", fontsize=FONT + 1)
    return fig
