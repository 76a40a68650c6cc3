"""Machine-readable exports: the JSON document, JSON Lines, CSV tables and Parquet.

All of them go through `scrub_document` / `tables`, which redact query-string values in step
URLs (see `secrets.redact_url`) unless the user asked for `--reveal-secrets`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

    from lyncpcap.analysis import Analysis

#: CSV files `lyncpcap analyze --format csv --output DIR` writes, in this order.
CSV_TABLES: tuple[str, ...] = ("sessions", "steps", "auth", "clients", "findings")
#: JSON Lines record types and the document key each comes from.
JSONL_TYPES: tuple[tuple[str, str], ...] = (
    ("capture", "captures"),
    ("session", "sessions"),
    ("auth", "auth"),
    ("client", "clients"),
    ("finding", "findings"),
)
CSV_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def document(analysis: Analysis, reveal: bool = False) -> dict[str, Any]:
    """The CONTRACT document as the command line writes it (the same as `Analysis.to_json`)."""
    return analysis.to_json(reveal=reveal)


def json_text(analysis: Analysis, reveal: bool = False) -> str:
    return json.dumps(document(analysis, reveal), indent=2, ensure_ascii=False) + "\n"


def write_json(doc: dict[str, Any], out: TextIO) -> None:
    """`json_text` of a `document`, written piece by piece: a document of thousands of sign-ins
    never exists as one string (nor as the millions of pieces that string is joined from)."""
    json.dump(doc, out, indent=2, ensure_ascii=False)
    out.write("\n")


def jsonl_records(analysis: Analysis, reveal: bool = False) -> Iterator[dict[str, Any]]:
    """One record per capture, session, auth exchange, client row and finding, each with `type`."""
    doc = document(analysis, reveal)
    for kind, key in JSONL_TYPES:
        for record in doc.get(key, []):
            yield {"type": kind, **record}


def jsonl_text(analysis: Analysis, reveal: bool = False) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in jsonl_records(analysis, reveal))


def tables(analysis: Analysis, reveal: bool = False) -> dict[str, pd.DataFrame]:
    """The typed DataFrames of `lyncpcap.report.frames` (step URLs shown in full only when revealing)."""
    from lyncpcap.report import frames  # pandas: only for the tables, not for JSON

    return {
        "sessions": analysis.sessions,
        "steps": frames.steps_frame(analysis.step_list, reveal),
        "auth": analysis.auth,
        "clients": analysis.clients,
        "findings": analysis.findings,
    }


def csv_text(frame: pd.DataFrame) -> str:
    return str(frame.to_csv(index=False, date_format=CSV_DATE_FORMAT))


def write_csv_dir(analysis: Analysis, folder: Path, reveal: bool = False) -> list[Path]:
    """sessions.csv, steps.csv, auth.csv, clients.csv and findings.csv in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    frames = tables(analysis, reveal)
    for name in CSV_TABLES:
        path = folder / f"{name}.csv"
        path.write_text(csv_text(frames[name]), encoding="utf-8")
        written.append(path)
    return written


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet with the DataFrame's dtypes (categories, nullable integers, UTC timestamps)."""
    frame.to_parquet(path, index=False)
    return path
