"""The error types of lyncpcap.

Decoders raise `MalformedError` on bytes that break their protocol; the engine counts those and
goes on.  `CaptureError` is for input that cannot be analysed at all (exit status 2 at the CLI).
"""

from __future__ import annotations

from pathlib import Path


class LyncpcapError(Exception):
    """Base class of every error lyncpcap raises on purpose."""


class MalformedError(LyncpcapError, ValueError):
    """Bytes that do not form a valid message of the protocol being decoded."""


class CaptureError(LyncpcapError):
    """An input file that cannot be read: the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
