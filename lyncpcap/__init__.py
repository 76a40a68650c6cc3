"""lyncpcap: Lync 2013 / Skype for Business sign-in analysis from packet captures.

`lyncpcap.analyze(path)` returns an `Analysis` with sessions, steps, authentication exchanges,
a per-client protocol summary and security findings (DataFrames and the CONTRACT JSON document).
"""

from __future__ import annotations

__version__ = "0.1.0"

from lyncpcap.analysis import Analysis, analyze

__all__ = ["Analysis", "__version__", "analyze"]
