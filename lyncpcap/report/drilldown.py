"""Drill-down from a session to its packets, as pyshark packets (for Jupyter).

`session_packets` selects the frames of a session's steps and of the TCP connections (and UDP
conversations) they ran on, decrypted with the keys the analysis used, and returns them as pyshark
packets.  pyshark drives tshark through asyncio and cannot run inside an event loop that is already
running — which is always the case in Jupyter — so it runs in a worker thread with its own loop.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lyncpcap.errors import LyncpcapError
from lyncpcap.read.tshark import RsaKey, Tshark, TsharkUnavailable, find_tshark, key_options

if TYPE_CHECKING:
    from lyncpcap.analysis import Analysis, CaptureInfo
    from lyncpcap.model import Session

__all__ = ["DrilldownError", "session_filters", "session_packets"]


class DrilldownError(LyncpcapError):
    """The session's packets cannot be shown (no capture behind it, tshark missing, …)."""


def _numbers(values: Sequence[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(set(values))) + "}"


def _streams(tshark: Tshark, path: str, frames: Sequence[int]) -> tuple[set[int], set[int]]:
    """tshark's tcp.stream / udp.stream of `frames` (the requests and answers of the steps)."""
    cmd = [tshark.path, "-n", "-r", path, "-Y", f"frame.number in {_numbers(frames)}",
           "-T", "fields", "-E", "occurrence=l", "-e", "tcp.stream", "-e", "udp.stream"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0 and not done.stdout:
        raise DrilldownError(f"{path}: tshark could not read the capture ({done.stderr.strip().splitlines()[-1:]})")
    tcp: set[int] = set()
    udp: set[int] = set()
    for line in done.stdout.splitlines():
        t, _, u = line.partition("\t")
        if t.strip().isdigit():
            tcp.add(int(t))
        elif u.strip().isdigit():
            udp.add(int(u))
    return tcp, udp


def session_filters(analysis: Analysis, session: Session, *, connections: bool = True) -> dict[int, str]:
    """Per capture (index into `analysis.captures`), the display filter of the session's frames.

    With `connections`, every frame of the TCP connections and UDP conversations the steps used
    is included (handshakes, TLS records, ACKs), found by asking tshark which streams the steps'
    frames belong to; otherwise only the steps' own frames."""
    by_capture: dict[int, list[int]] = {}
    for step in session.steps:
        index = int(step.facts.get("capture", 0))
        by_capture.setdefault(index, []).append(step.frame)
    out: dict[int, str] = {}
    tshark: Tshark | None = None
    for index, frames in sorted(by_capture.items()):
        info = analysis.captures[index]
        _check_packets(info)
        if info.stats.get("exported_pdus"):
            # steps of an exported-PDU file carry the original capture's frame numbers
            out[index] = f"exported_pdu.orig_fno in {_numbers(frames)}"
            continue
        clause = f"frame.number in {_numbers(frames)}"
        if connections:
            tshark = tshark or _tshark()
            tcp, udp = _streams(tshark, info.path, frames)
            if tcp:
                clause += f" || tcp.stream in {_numbers(sorted(tcp))}"
            if udp:
                clause += f" || udp.stream in {_numbers(sorted(udp))}"
        out[index] = clause
    return out


def _check_packets(info: CaptureInfo) -> None:
    if info.format in ("saz", "har"):
        raise DrilldownError(f"{info.path} is a {info.format.upper()} archive: it holds HTTP exchanges, not packets")


def _tshark() -> Tshark:
    try:
        return find_tshark()
    except TsharkUnavailable as exc:
        raise DrilldownError(str(exc)) from None


def _load(path: str, display_filter: str, params: list[str], kwargs: dict[str, Any]) -> list[Any]:
    """Read the packets with pyshark on this thread's own event loop."""
    import pyshark

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    capture = None
    try:
        capture = pyshark.FileCapture(
            path, display_filter=display_filter, custom_parameters=params, eventloop=loop, keep_packets=True, **kwargs
        )
        capture.load_packets()
        return list(capture)
    finally:
        if capture is not None:
            capture.close()
        asyncio.set_event_loop(None)
        loop.close()


def session_packets(analysis: Analysis, session: Session, *, connections: bool = True, **kwargs: Any) -> list[Any]:
    """The session's frames as pyshark packets, in capture order (and capture by capture when the
    analysis read several).  Keyword arguments go to `pyshark.FileCapture` (e.g. `use_json=True`,
    `include_raw=True`); `custom_parameters` given there are added to the decryption options.

    Works the same inside a running asyncio loop (Jupyter): pyshark runs on a worker thread."""
    filters = session_filters(analysis, session, connections=connections)
    _tshark()  # one clear line when tshark is missing, before pyshark says it its way
    extra = kwargs.pop("custom_parameters", None) or []
    if not isinstance(extra, list):
        raise DrilldownError("custom_parameters must be a list of tshark arguments")
    packets: list[Any] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lyncpcap-pyshark") as pool:
        for index, display_filter in sorted(filters.items()):
            info = analysis.captures[index]
            keylog = Path(info.keylog) if info.keylog else None
            rsa = [RsaKey.parse(k) for k in info.rsa_keys]
            params = key_options(keylog, rsa) + list(extra)
            packets += pool.submit(_load, info.path, display_filter, params, dict(kwargs)).result()
    return packets
