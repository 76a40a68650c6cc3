"""The CONTRACT document (or JSON Lines) written while the analysis runs.

A pipeline consumer: each session is written the moment it closes; steps no session claimed and
authentication messages wait in a temporary spool; the client summary and the findings come from
compact accumulators.  Memory stays flat however many sign-ins a capture holds.  The content is
`Analysis.to_json()`'s; only the order of list items differs (sessions in the order they close).
"""

from __future__ import annotations

import json
import tempfile
from typing import Any, TextIO

from lyncpcap import __version__
from lyncpcap.engine import TlsConnection
from lyncpcap.findings import FindingsAccumulator, Thresholds
from lyncpcap.model import AuthExchange, CaptureInfo, Session, Step
from lyncpcap.report.document import SCHEMA, auth_record, finding_record, session_record, step_record
from lyncpcap.sessions import ClientSummary

_SPOOL_IN_MEMORY = 8 << 20  # bytes of spooled records kept in memory before they go to a file


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class DocumentWriter:
    """Writes the JSON document (`lines=False`) or JSON Lines (`lines=True`) to `out`."""

    def __init__(self, out: TextIO, *, reveal: bool = False, lines: bool = False, thresholds: Thresholds | None = None) -> None:
        self.out = out
        self.reveal = reveal
        self.lines = lines
        self.findings = FindingsAccumulator(thresholds)
        self.clients = ClientSummary()
        self.captures: list[CaptureInfo] = []
        self.tls: list[TlsConnection] = []
        self._sessions = 0
        # spools live as long as the writer: closed by close() / the with-block
        self._unattached = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, mode="w+t", encoding="utf-8")  # noqa: SIM115
        self._auth = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, mode="w+t", encoding="utf-8")  # noqa: SIM115
        self._started = False  # nothing is written before the first result: a bad input leaves no half document

    def _start(self) -> None:
        if not self._started and not self.lines:
            tool = _dumps({"name": "lyncpcap", "version": __version__})
            self.out.write(f'{{"schema":{SCHEMA},"tool":{tool},\n"sessions":[')
        self._started = True

    # -- pipeline consumer ---------------------------------------------------------------------------
    def session(self, session: Session) -> None:
        self._start()
        record = session_record(session, self.reveal)
        if self.lines:
            self.out.write(_dumps({"type": "session", **record}) + "\n")
        else:
            self.out.write(("\n" if not self._sessions else ",\n") + _dumps(record))
        self._sessions += 1
        self.clients.add(session)
        self.findings.add_session(session)
        for st in session.steps:
            self._spool_auth(st.exchanges, session.id)

    def unattached_step(self, step: Step) -> None:
        self._unattached.write(_dumps(step_record(step, self.reveal)) + "\n")
        self.findings.add_step(step)
        self._spool_auth(step.exchanges, None)

    def orphan(self, exchange: AuthExchange) -> None:
        self._spool_auth([exchange], None)
        self.findings.add_exchange(exchange, None)

    def capture(self, info: CaptureInfo, tls: list[TlsConnection]) -> None:
        self.captures.append(info)
        self.tls.extend(tls)

    def _spool_auth(self, exchanges: list[AuthExchange], session: str | None) -> None:
        for a in exchanges:
            self._auth.write(_dumps(auth_record(a, session)) + "\n")

    # -- the rest, once the analysis is done -----------------------------------------------------------
    def end(self) -> None:
        self._start()
        clients = self.clients.rows()
        findings = [finding_record(f) for f in self.findings.findings()]
        if self.lines:
            for info in self.captures:
                self.out.write(_dumps({"type": "capture", **info.as_dict()}) + "\n")
            self._copy_lines(self._auth, "auth")
            for row in clients:
                self.out.write(_dumps({"type": "client", **row}) + "\n")
            for f in findings:
                self.out.write(_dumps({"type": "finding", **f}) + "\n")
            self._copy_lines(self._unattached, "step")
        else:
            out = self.out
            out.write("\n],\n" if self._sessions else "],\n")
            out.write('"auth":[')
            self._copy_array(self._auth)
            out.write('],\n"unattached_steps":[')
            self._copy_array(self._unattached)
            out.write('],\n"tls":' + _dumps([t.as_dict() for t in self.tls]))  # type: ignore[arg-type]
            out.write(',\n"captures":' + _dumps([c.as_dict() for c in self.captures]))  # type: ignore[arg-type]
            out.write(',\n"clients":' + _dumps(clients))  # type: ignore[arg-type]
            out.write(',\n"findings":' + _dumps(findings))  # type: ignore[arg-type]
            out.write("}\n")
        self.close()

    def close(self) -> None:
        self._unattached.close()
        self._auth.close()

    def __enter__(self) -> DocumentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _copy_array(self, spool: Any) -> None:
        spool.seek(0)
        first = True
        for line in spool:
            self.out.write(("\n" if first else ",\n") + line.rstrip("\n"))
            first = False
        if not first:
            self.out.write("\n")

    def _copy_lines(self, spool: Any, kind: str) -> None:
        spool.seek(0)
        prefix = f'{{"type":"{kind}",'
        for line in spool:
            self.out.write(prefix + line[1:])
