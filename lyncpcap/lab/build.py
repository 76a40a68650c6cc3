"""Build the catalogue of sample captures (used by `python -m lyncpcap.lab` and the tests)."""

from __future__ import annotations

from pathlib import Path

from lyncpcap.lab.scenarios import ARCHIVE_FORMATS, CATALOGUE, Spec
from lyncpcap.lab.world import Capture


def build_one(spec: Spec, outdir: Path, *, pki: object = None) -> list[Path]:
    cap = Capture(spec.name, spec.description, seed=spec.seed, start=spec.start, link=spec.link, tls=spec.tls, pki=pki,
                  http2=spec.http2)
    spec.build(cap)
    if spec.fmt in ARCHIVE_FORMATS:
        from lyncpcap.lab.archives import write_archive

        return write_archive(cap, outdir, spec.fmt, client=spec.client, archive_of=spec.archive_of)
    return cap.write(
        outdir,
        fmt=spec.fmt,
        nanosecond=spec.nanosecond,
        big_endian=spec.big_endian,
        embed_keys=spec.embed_keys,
        twin_of=spec.twin_of,
    )


def build_all(outdir: Path, *, only: list[str] | None = None, tls: bool = True) -> list[Path]:
    written: list[Path] = []
    pki = None
    try:
        for spec in CATALOGUE:
            if only and not any(spec.name.startswith(o) for o in only):
                continue
            if spec.tls and not tls:
                continue
            if spec.tls and pki is None:
                from lyncpcap.lab.tlssim import Pki

                pki = Pki()
            written += build_one(spec, outdir, pki=pki if spec.tls else None)
    finally:
        if pki is not None:
            pki.close()  # type: ignore[attr-defined]
    return written
