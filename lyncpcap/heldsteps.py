"""Steps held back while the TLS of a capture is decrypted, then handed on in time order.

lyncpcap reads a capture once itself and has tshark decrypt its TLS beside that read; the decrypted
HTTP and SIP reach the classifiers only after the read is over.  The steps of the read (DNS, KDC,
plaintext web and SIP) would reach the session builder first, all of them, and the decrypted ones
after them: out of time order by as much as the capture is long, so that the builder would close
every session before its web steps came.  Held here instead, they are handed on merged with the
decrypted ones by the time each completed — the order one pass over a plaintext capture gives.

Memory stays bounded: past `IN_MEMORY` steps, the held ones wait in a temporary file — an
unnamed one (O_TMPFILE where the system has it), gone when it is closed, since a step may carry
the secrets it saw for redaction.
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO

from lyncpcap.model import Step

__all__ = ["IN_MEMORY", "HeldSteps"]

#: Steps kept in memory; more go to a temporary file (a step pickles to well under a kilobyte).
IN_MEMORY = 20_000


class HeldSteps:
    """`hold(step)` while the capture is read; then `merge(step)` for each decrypted step, which
    first hands on every held step that completed before it; `release()` hands on the rest.
    Steps go to `on_step`."""

    def __init__(self, on_step: Callable[[Step], None]) -> None:
        self.on_step = on_step
        self._memory: deque[Step] = deque()
        self._file: IO[bytes] | None = None
        self._in_file = 0  # held steps in the file, after those in memory
        self._reading = False  # the file is being read back: nothing more may be held

    def __len__(self) -> int:
        return len(self._memory) + self._in_file

    def hold(self, step: Step) -> None:
        assert not self._reading, "a step held after the held ones began to be handed on"
        if self._file is None and len(self._memory) < IN_MEMORY:
            self._memory.append(step)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="lyncpcap-steps-")  # noqa: SIM115 (closed by close())
        pickle.dump(step, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._in_file += 1

    def merge(self, step: Step) -> None:
        self.release(step.end)
        self.on_step(step)

    def release(self, until: float = math.inf) -> None:
        """Hand on the held steps, in the order they were held, up to the first that completed
        after `until`."""
        while True:
            head = self._peek()
            if head is None or head.end > until:
                return
            self._memory.popleft()
            self.on_step(head)

    def _peek(self) -> Step | None:
        if not self._memory and self._in_file:
            assert self._file is not None
            if not self._reading:
                self._file.seek(0)
                self._reading = True
            # the file's steps come back a batch at a time, memory held to IN_MEMORY
            while self._in_file and len(self._memory) < IN_MEMORY:
                self._memory.append(pickle.load(self._file))
                self._in_file -= 1
        return self._memory[0] if self._memory else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory.clear()
        self._in_file = 0

    def __enter__(self) -> HeldSteps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
