"""Shared helpers for the protocol decoder tests: corpus captures read with tshark, not with lyncpcap.

Payload bytes come from `tshark -T fields` (udp.payload, tcp.payload with sequence numbers, HTTP
auth headers), so these tests do not depend on lyncpcap's own capture reader.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(os.environ.get("LYNCPCAP_CORPUS", Path(__file__).resolve().parents[1] / "corpus"))
TSHARK = shutil.which("tshark")

# the corpus ships with the tests and the test command installs tshark: a missing one is a
# failure (the `corpus` and `tshark` fixtures of tests/conftest.py), never a skip
needs_corpus = pytest.mark.usefixtures("corpus", "tshark")


@functools.cache
def expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / "expected.json").read_text())
    return data["files"]


@functools.cache
def tshark_fields(capture: str, display_filter: str, fields: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Rows of tab-separated field values (multi-valued fields joined by ',')."""
    assert TSHARK is not None
    cmd = [TSHARK, "-n", "-r", str(CORPUS / capture), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        parts += [""] * (len(fields) - len(parts))
        rows.append(tuple(parts))
    return tuple(rows)


@dataclass(frozen=True)
class Segment:
    frame: int
    data: bytes
    gap_before: bool  # bytes are missing between the previous segment and this one


@functools.cache
def tcp_directions(capture: str, display_filter: str = "tcp.len > 0") -> dict[tuple[int, int], list[Segment]]:
    """Per (tcp.stream, direction) the payload in sequence order, retransmissions removed.

    Direction 0 is the side that sent the stream's first payload-carrying segment (TLS client,
    Kerberos client …) as tshark numbers streams. Overlaps keep the first copy; holes are flagged.
    """
    rows = tshark_fields(
        capture,
        display_filter,
        ("frame.number", "tcp.stream", "tcp.srcport", "tcp.seq", "tcp.payload"),
    )
    first_port: dict[int, str] = {}
    raw: dict[tuple[int, int], list[tuple[int, int, bytes]]] = {}
    for frame_text, stream_text, sport, seq_text, payload in rows:
        if not payload:
            continue
        s = int(stream_text)
        first_port.setdefault(s, sport)
        direction = 0 if sport == first_port[s] else 1
        raw.setdefault((s, direction), []).append((int(seq_text), int(frame_text), bytes.fromhex(payload)))
    out: dict[tuple[int, int], list[Segment]] = {}
    for key, segments in raw.items():
        segments.sort(key=lambda t: (t[0], t[1]))
        next_seq: int | None = None
        ordered: list[Segment] = []
        for seq, frame, data in segments:
            gap = False
            if next_seq is not None:
                if seq + len(data) <= next_seq:
                    continue  # retransmission
                if seq < next_seq:
                    data = data[next_seq - seq :]
                    seq = next_seq
                gap = seq > next_seq
            ordered.append(Segment(frame, data, gap))
            next_seq = seq + len(data)
        out[key] = ordered
    return out
