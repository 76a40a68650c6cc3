"""Machine-readable exports: the JSON document, JSON Lines, CSV tables and Parquet.

All of them go through `scrub_document` / `tables`, which redact query-string values in step
URLs (see `view.safe_url`) unless the user asked for `--reveal-secrets`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lyncpcap.report import view

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


def scrub_document(doc: dict[str, Any], reveal: bool = False) -> dict[str, Any]:
    """The CONTRACT document with query values in step URLs redacted (unless `reveal`)."""
    if reveal:
        return doc
    out = copy.deepcopy(doc)
    for session in out.get("sessions", []):
        for step in session.get("steps", []):
            step["url"] = view.safe_url(step.get("url"))
    for step in out.get("unattached_steps", []):
        step["url"] = view.safe_url(step.get("url"))
    return out


def document(analysis: Analysis, reveal: bool = False) -> dict[str, Any]:
    return scrub_document(analysis.to_json(reveal=reveal), reveal)


def json_text(analysis: Analysis, reveal: bool = False) -> str:
    return json.dumps(document(analysis, reveal), indent=2, ensure_ascii=False) + "\n"


def jsonl_records(analysis: Analysis, reveal: bool = False) -> Iterator[dict[str, Any]]:
    """One record per capture, session, auth exchange, client row and finding, each with `type`."""
    doc = document(analysis, reveal)
    for kind, key in JSONL_TYPES:
        for record in doc.get(key, []):
            yield {"type": kind, **record}


def jsonl_text(analysis: Analysis, reveal: bool = False) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in jsonl_records(analysis, reveal))


def tables(analysis: Analysis, reveal: bool = False) -> dict[str, pd.DataFrame]:
    """The typed DataFrames of `lyncpcap.report.frames`, with step URLs made safe."""
    steps = analysis.steps
    steps["url"] = steps["url"].map(lambda u: view.safe_url(u, reveal), na_action="ignore").astype("string")
    return {
        "sessions": analysis.sessions,
        "steps": steps,
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
