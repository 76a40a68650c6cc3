"""`lyncpcap.analyze()` and the `Analysis` it returns: sessions, steps, auth, clients and findings.

The same object serves scripts (typed pandas DataFrames, the CONTRACT JSON document) and Jupyter
(`_repr_mimebundle_` gives a summary table, not a dump).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lyncpcap import engine, findings, pipeline, sessions
from lyncpcap.model import AuthExchange, CaptureInfo, Finding, Session, Step
from lyncpcap.read.tshark import RsaKey

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


class Analysis:
    """The result of analysing one or more captures together (built by `analyze`)."""

    def __init__(
        self,
        captures: list[CaptureInfo],
        session_list: list[Session],
        unattached: list[Step],
        orphans: list[AuthExchange],
        tls: list[engine.TlsConnection],
        thresholds: findings.Thresholds | None = None,
        sources: list[str] | None = None,
    ) -> None:
        self.captures = captures
        self.session_list = sorted(session_list, key=lambda s: int(s.id[1:]))
        self.tls_list = tls
        self.sources = sources or [c.path for c in captures]
        steps = [st for s in self.session_list for st in s.steps] + unattached
        self.step_list = sorted(steps, key=lambda s: (s.time, s.frame))
        # every authentication message travels with the step that carried it
        self._auth_session: dict[int, str] = {}
        auth = list(orphans)
        for st in self.step_list:
            for a in st.exchanges:
                auth.append(a)
                if st.session:
                    self._auth_session[id(a)] = st.session
        self.auth_list = sorted(auth, key=lambda a: (a.time, a.frame))
        acc = findings.FindingsAccumulator(thresholds)
        for s in self.session_list:
            acc.add_session(s)
        for st in unattached:
            acc.add_step(st)
        for a in orphans:
            acc.add_exchange(a, None)
        self.finding_list: list[Finding] = acc.findings()

    @classmethod
    def from_steps(
        cls,
        captures: list[CaptureInfo],
        steps: list[Step],
        orphans: list[AuthExchange],
        tls: list[engine.TlsConnection],
        thresholds: findings.Thresholds | None = None,
    ) -> Analysis:
        """An analysis of steps already collected (e.g. by an `Engine` without a step callback)."""
        session_list, unattached = sessions.build(steps)
        return cls(captures, session_list, unattached, orphans, tls, thresholds)

    def session_of_auth(self, a: AuthExchange) -> str | None:
        return self._auth_session.get(id(a))

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


class _Collect:
    """The pipeline consumer behind `analyze`: keeps everything, in memory."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.unattached: list[Step] = []
        self.orphans: list[AuthExchange] = []
        self.captures: list[CaptureInfo] = []
        self.tls: list[engine.TlsConnection] = []

    def session(self, session: Session) -> None:
        self.sessions.append(session)

    def unattached_step(self, step: Step) -> None:
        self.unattached.append(step)

    def orphan(self, exchange: AuthExchange) -> None:
        self.orphans.append(exchange)

    def capture(self, info: CaptureInfo, tls: list[engine.TlsConnection]) -> None:
        self.captures.append(info)
        self.tls.extend(tls)


def analyze(
    captures: str | Path | Iterable[str | Path],
    *,
    keylog: str | Path | None = None,
    rsa_keys: Iterable[str | RsaKey] | None = None,
    progress: Callable[[int], None] | None = None,
    thresholds: findings.Thresholds | None = None,
    full: bool = False,
    jobs: int | None = None,
) -> Analysis:
    """Analyse one or more inputs into one `Analysis`: captures (pcap, pcapng, gzip'd, exported
    PDUs), Fiddler SAZ and HAR archives, each recognised from its content.

    TLS is decrypted through tshark with `keylog` (an SSLKEYLOGFILE), secrets embedded in a pcapng,
    and `rsa_keys` (`FILE`, `FILE@ADDRESS` or `FILE@ADDRESS:PORT`, or `RsaKey`s).  Raises
    `lyncpcap.errors.CaptureError` for an input that cannot be read at all, or whose TLS needs a
    tshark that is missing.

    `jobs`: processes for one large capture without decryption; None: one per CPU when the capture
    is large (`lyncpcap.parallel`), 1: this process only.  The results are the same either way.
    """
    paths = [captures] if isinstance(captures, (str, Path)) else list(captures)
    keys = pipeline.rsa_key_list(rsa_keys)
    collect = _Collect()
    pipeline.run(paths, collect, keylog=keylog, rsa_keys=keys, progress=progress, full=full, jobs=jobs)
    return Analysis(
        collect.captures, collect.sessions, collect.unattached, collect.orphans, collect.tls, thresholds, [str(p) for p in paths]
    )
