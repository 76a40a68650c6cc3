"""`lyncpcap.analyze()` and the `Analysis` it returns: sessions, steps, auth, clients and findings.

The same object serves scripts (typed pandas DataFrames, the CONTRACT JSON document) and Jupyter
(`_repr_mimebundle_` gives a summary table, not a dump).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lyncpcap import engine, findings, sessions
from lyncpcap.errors import CaptureError
from lyncpcap.model import AuthExchange, Finding, Session, Step
from lyncpcap.read.tshark import RsaKey

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass(slots=True)
class CaptureInfo:
    path: str
    format: str
    packets: int
    decrypted: bool
    warnings: list[str] = field(default_factory=list)
    compressed: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    #: the keys the capture was read with (the drill-down decrypts with the same ones)
    keylog: str | None = None
    rsa_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "packets": self.packets,
            "decrypted": self.decrypted,
            "warnings": list(self.warnings),
            "compressed": self.compressed,
        }


class Analysis:
    """The result of analysing one or more captures together."""

    def __init__(
        self,
        captures: list[CaptureInfo],
        steps: list[Step],
        auth: list[AuthExchange],
        tls: list[engine.TlsConnection],
        thresholds: findings.Thresholds | None = None,
        sources: list[str] | None = None,
    ) -> None:
        self.captures = captures
        self.step_list = steps
        self.auth_list = sorted(auth, key=lambda a: (a.time, a.frame))
        self.tls_list = tls
        self.sources = sources or [c.path for c in captures]
        self.session_list: list[Session] = sessions.build(steps)
        self.step_list.sort(key=lambda s: (s.time, s.frame))
        self._auth_session = self._link_auth()
        self.finding_list: list[Finding] = findings.build(self.session_list, self.step_list, self.auth_list, thresholds)

    # ------------------------------------------------------------------------------------------
    def _link_auth(self) -> dict[tuple[int, int, str], str]:
        by_frame: dict[int, str] = {}
        # per (src, dst): session steps in time order, their times, and the running maximum of their
        # ends, so "the first step that was under way at time t" is two bisections, not a scan
        by_pair: dict[tuple[str, str], tuple[list[str], list[float], list[float]]] = {}
        for s in self.step_list:
            if s.session:
                by_frame.setdefault(s.frame, s.session)
                sids, times, ends = by_pair.setdefault((s.src, s.dst), ([], [], []))
                sids.append(s.session)
                times.append(s.time)
                ends.append(max(ends[-1], s.end + 1e-6) if ends else s.end + 1e-6)
        out: dict[tuple[int, int, str], str] = {}
        for a in self.auth_list:
            sid = by_frame.get(a.frame)
            if sid is None and (a.dst, a.src) in by_pair:
                # responses (challenges, replies) belong to the step whose answer they are
                sids, times, ends = by_pair[(a.dst, a.src)]
                first = bisect.bisect_left(ends, a.time)
                if first < bisect.bisect_right(times, a.time):
                    sid = sids[first]
            if sid:
                out[(a.frame, id(a), a.message)] = sid
        return out

    def session_of_auth(self, a: AuthExchange) -> str | None:
        return self._auth_session.get((a.frame, id(a), a.message))

    def client_rows(self) -> list[dict[str, Any]]:
        return sessions.client_summary(self.session_list)

    def session(self, sid: str) -> SessionView:
        for s in self.session_list:
            if s.id == sid:
                return SessionView(self, s)
        raise KeyError(f"no session {sid!r}; sessions are {', '.join(x.id for x in self.session_list) or 'none'}")

    # ------------------------------------------------------------------------------------------
    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        from lyncpcap.report.document import document

        return document(self, reveal=reveal)

    def to_json_text(self, *, reveal: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(reveal=reveal), indent=indent, ensure_ascii=False)

    # DataFrames --------------------------------------------------------------------------------
    @property
    def sessions(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.sessions_frame(self)

    @property
    def steps(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.steps_frame(self.step_list)

    @property
    def auth(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.auth_frame(self)

    @property
    def clients(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.clients_frame(self)

    @property
    def findings(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.findings_frame(self)

    @property
    def tls(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.tls_frame(self)

    # Pictures and Jupyter ------------------------------------------------------------------------
    def plot(self, *, align: str = "auto") -> Figure:
        """The timeline of every session (a matplotlib Figure; Jupyter shows it inline)."""
        from lyncpcap.report import plots

        return plots.capture_figure(self.session_list, align=align)  # type: ignore[arg-type]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from lyncpcap.report import notebook

        return notebook.analysis_bundle(self)

    def __repr__(self) -> str:
        ok = sum(1 for s in self.session_list if s.outcome == "success")
        bad = sum(1 for s in self.session_list if s.outcome == "failure")
        return (
            f"<Analysis of {len(self.captures)} capture(s): {len(self.session_list)} sessions "
            f"({ok} succeeded, {bad} failed), {len(self.finding_list)} findings>"
        )


class SessionView:
    """One session for drill-down: its steps as a DataFrame, its packets through pyshark."""

    def __init__(self, analysis: Analysis, session: Session) -> None:
        self.analysis = analysis
        self.record = session

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def steps(self) -> pd.DataFrame:
        from lyncpcap.report import frames

        return frames.steps_frame(self.record.steps)

    def timeline(self) -> Figure:
        """The session's steps as bars on a time axis, failures marked."""
        from lyncpcap.report import plots

        return plots.session_figure(self.record)

    def ladder(self) -> Figure:
        """Who talked to whom: client, reverse proxy, front end, AD FS, KDC as lanes."""
        from lyncpcap.report import ladder

        return ladder.figure(self.record)

    def packets(self, **kwargs: Any) -> list[Any]:
        from lyncpcap.report import drilldown

        return drilldown.session_packets(self.analysis, self.record, **kwargs)

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        from lyncpcap.report.document import session_record

        return session_record(self.record, reveal)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from lyncpcap.report import notebook

        return notebook.session_bundle(self.record)

    def __repr__(self) -> str:
        s = self.record
        return f"<Session {s.id}: {s.user} {s.client_kind} {s.location} {s.auth_protocol} {s.outcome}>"


def analyze(
    captures: str | Path | Iterable[str | Path],
    *,
    keylog: str | Path | None = None,
    rsa_keys: Iterable[str | RsaKey] | None = None,
    progress: Callable[[int], None] | None = None,
    thresholds: findings.Thresholds | None = None,
    full: bool = False,
) -> Analysis:
    """Analyse one or more inputs into one `Analysis`: captures (pcap, pcapng, gzip'd, exported
    PDUs), Fiddler SAZ and HAR archives, each recognised from its content.

    TLS is decrypted through tshark with `keylog` (an SSLKEYLOGFILE), secrets embedded in a pcapng,
    and `rsa_keys` (`FILE`, `FILE@ADDRESS` or `FILE@ADDRESS:PORT`, or `RsaKey`s).  Raises
    `lyncpcap.errors.CaptureError` for an input that cannot be read at all, or whose TLS needs a
    tshark that is missing.
    """
    from lyncpcap import inputs

    paths = [captures] if isinstance(captures, (str, Path)) else list(captures)
    keys: list[RsaKey] = []
    for k in rsa_keys or ():
        if isinstance(k, RsaKey):
            keys.append(k)
            continue
        try:
            keys.append(RsaKey.parse(k))
        except ValueError as exc:
            raise CaptureError(k, f"not an RSA key specification: {exc}") from None
    for key in keys:
        if not key.path.is_file():
            raise CaptureError(key.path, "RSA key file not found")
    infos: list[CaptureInfo] = []
    steps: list[Step] = []
    auth: list[AuthExchange] = []
    tls: list[engine.TlsConnection] = []
    for index, p in enumerate(paths):
        result = inputs.analyse(p, keylog=keylog, rsa_keys=keys, progress=progress, full=full)
        for s in result.steps:
            if len(paths) > 1:
                s.facts["capture"] = index
        infos.append(
            CaptureInfo(
                path=result.path,
                format=result.format,
                packets=result.packets,
                decrypted=result.decrypted,
                warnings=result.warnings,
                compressed=result.compressed,
                stats=dict(result.stats),
                keylog=str(keylog) if keylog is not None else None,
                rsa_keys=[str(k) for k in keys],
            )
        )
        steps.extend(result.steps)
        auth.extend(result.auth)
        tls.extend(result.tls)
    return Analysis(infos, steps, auth, tls, thresholds, [str(p) for p in paths])
