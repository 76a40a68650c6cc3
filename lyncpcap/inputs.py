"""What an input file is — a capture (pcap, pcapng, gzip'd either), a Fiddler SAZ, a HAR — decided
from its first bytes, never its name, and which reader analyses it.

Captures go to `engine.analyse_file` (which also reads exported-PDU frames and has tshark decrypt
TLS); SAZ and HAR archives are read into HTTP exchanges and go to `engine.analyse_archive`.
"""

from __future__ import annotations

import enum
import gzip
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from lyncpcap import engine
from lyncpcap.errors import CaptureError
from lyncpcap.model import Step
from lyncpcap.read import saz
from lyncpcap.read.tshark import RsaKey

__all__ = ["InputKind", "analyse", "sniff"]

_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 64


class InputKind(enum.Enum):
    CAPTURE = "capture"  # pcap / pcapng, plain or gzip'd: open_capture says which, or what is wrong
    SAZ = "saz"
    HAR = "har"
    HAR_GZIP = "har.gz"


def _looks_like_json(head: bytes) -> bool:
    """JSON text that opens an object: UTF-8 (with or without a byte-order mark) or UTF-16 after
    its byte-order mark (PowerShell's Out-File, Notepad's "Unicode")."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[2 : len(head) & ~1].decode("utf-16-le" if head[0] == 0xFF else "utf-16-be", errors="replace")
        return text.lstrip().startswith("{")
    return head.removeprefix(_BOM).lstrip().startswith(b"{")


def sniff(path: str | Path) -> InputKind:
    """The kind of input `path` holds.  Anything not recognised as an archive is treated as a
    capture, so the capture reader's one-line error explains it."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        return InputKind.CAPTURE  # open_capture words these errors
    except OSError as exc:
        raise CaptureError(p, f"cannot read: {exc.strerror or exc}") from None
    if head.startswith((_ZIP, _EMPTY_ZIP)):
        return InputKind.SAZ if _is_saz(p) else InputKind.CAPTURE
    if head.startswith(_GZIP):
        try:
            with gzip.open(p, "rb") as g:
                inner = g.read(SNIFF_BYTES)
        except (OSError, EOFError, zlib.error):
            return InputKind.CAPTURE
        return InputKind.HAR_GZIP if _looks_like_json(inner) else InputKind.CAPTURE
    if _looks_like_json(head):
        return InputKind.HAR
    return InputKind.CAPTURE


def _is_saz(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except saz.ZIP_DAMAGE:
        return True  # a damaged zip: the SAZ reader says what is wrong with it
    return any(n.replace("\\", "/").lower().startswith("raw/") for n in names) or not names


def analyse(
    path: str | Path,
    *,
    keylog: str | Path | None = None,
    rsa_keys: Sequence[RsaKey] = (),
    progress: Callable[[int], None] | None = None,
    full: bool = False,
    on_step: Callable[[Step], None] | None = None,
) -> engine.CaptureResult:
    """Analyse one input of any supported kind; `on_step` streams a capture's steps (archives are
    small: their steps come in the result)."""
    kind = sniff(path)
    if kind is InputKind.SAZ:
        return engine.analyse_archive(path, saz.read(path))
    if kind in (InputKind.HAR, InputKind.HAR_GZIP):
        from lyncpcap.read import har

        return engine.analyse_archive(path, har.read(path))
    return engine.analyse_file(path, progress=progress, full=full, keylog=keylog, rsa_keys=rsa_keys, on_step=on_step)
