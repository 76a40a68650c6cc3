"""`python -m lyncpcap.lab [OUTDIR] [--only NAME]`: (re)build the sample captures and truth files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lyncpcap.lab.build import build_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lyncpcap.lab", description=__doc__)
    p.add_argument("outdir", nargs="?", default="sample_captures", help="where to write (default: sample_captures)")
    p.add_argument("--only", action="append", default=[], help="build only captures whose name starts with this")
    p.add_argument("--no-tls", action="store_true", help="skip the real-TLS twins (they differ on every run)")
    args = p.parse_args(argv)
    written = build_all(Path(args.outdir), only=args.only, tls=not args.no_tls)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
