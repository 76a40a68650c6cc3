"""Run tshark with the lyncpcap Lua plugin and read back what it put on each frame.

Used by tests/test_wireshark_plugin.py; one tshark run per capture, fields read with `-T fields`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "dissectors" / "lync.lua"

#: separators no field value contains
SEP = "\x1f"
AGG = "\x1e"

FIELDS = (
    "frame.number",
    "lync.step",
    "lync.kind",
    "lync.auth",
    "lync.credential",
    "lync.result",
    "lync.user",
    "lync.client_kind",
    "lync.diagnostic",
    "lync.request_in",
    "lync.response_in",
    "lync.retransmission_of",
    "lync.tls_dsk.flight",
    "lync.gssapi.mechanism",
    "lync.error",
    "ntlmssp.auth.username",
    "kerberos.SNameString",
    "http.user_agent",
    "sip.User-Agent",
)


@dataclass
class Frame:
    """The plugin's fields on one frame (absent fields are empty strings / empty lists)."""

    number: int
    values: dict[str, list[str]] = field(default_factory=dict)

    def one(self, name: str) -> str:
        vals = self.values.get(name) or []
        return vals[0] if vals else ""

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name) or [])


def tshark_path() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        raise RuntimeError("tshark is required for the Wireshark plugin tests (apt-get install tshark)")
    return exe


def run_plugin(
    capture: Path,
    *,
    plugin: Path = PLUGIN,
    keylog: Path | None = None,
    two_pass: bool = False,
    extra: tuple[str, ...] = (),
) -> dict[int, Frame]:
    """Every frame of `capture` with the plugin's fields, keyed by frame number."""
    args = [tshark_path(), "-n", "-X", f"lua_script:{plugin}", "-r", str(capture)]
    if keylog is not None:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    if two_pass:
        # a read filter makes tshark build the tree on its first pass too, so the plugin sees
        # the whole capture before the second pass prints it
        args += ["-2", "-R", "frame"]
    args += list(extra)
    args += ["-T", "fields", "-E", f"separator={SEP}", "-E", f"aggregator={AGG}", "-E", "quote=n"]
    for name in FIELDS:
        args += ["-e", name]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tshark failed on {capture}: {proc.stderr.strip()}")
    problems = [line for line in proc.stderr.splitlines() if "lua" in line.lower() or "error" in line.lower()]
    if problems:
        raise RuntimeError(f"tshark reported Lua problems on {capture}: {' | '.join(problems)}")
    frames: dict[int, Frame] = {}
    for line in proc.stdout.split("\n"):
        if not line:
            continue
        cols = line.rstrip("\r").split(SEP)
        if len(cols) != len(FIELDS):
            raise RuntimeError(f"unexpected tshark line for {capture}: {line!r}")
        number = int(cols[0])
        values = {
            name: [v for v in col.split(AGG) if v != ""]
            for name, col in zip(FIELDS[1:], cols[1:], strict=True)
        }
        frames[number] = Frame(number, values)
    return frames
