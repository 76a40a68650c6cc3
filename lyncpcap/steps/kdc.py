"""Kerberos KDC exchanges (UDP and TCP port 88) as steps and authentication records.

Each AS-REQ/TGS-REQ with its answer is one `kerberos` step; every message is an AuthExchange.
Error codes map to plain meanings (PROTOCOL.md §5.1, §9.3): 25 is a normal challenge, 7 a missing SPN.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.model import AuthExchange, Evidence, Step
from lyncpcap.protocols import kerberos
from lyncpcap.steps import tables
from lyncpcap.steps.common import Collector

#: errors that are part of a normal exchange (the client retries with more)
CHALLENGE_ERRORS = frozenset({25, 52})
#: Seconds within which a byte-identical UDP datagram on the same ports is the same message seen
#: again (a SPAN port mirroring both directions, pktmon at two layers, a client's retransmission
#: before the KDC answered), not a new exchange.
DUPLICATE_WINDOW = 2.0
#: A request unanswered this long has timed out (a Kerberos client tries the next KDC after a few
#: seconds): its step is handed on then, in time order, rather than at the end of the capture.
TIMEOUT = 30.0


@dataclass(slots=True)
class _Pending:
    step: Step
    msg: kerberos.KerberosMessage
    raw: bytes


def principal(name: str | None, realm: str | None) -> str | None:
    if not name:
        return None
    return f"{name}@{realm}" if realm else name


class KdcClassifier:
    def __init__(self, out: Collector) -> None:
        self.out = out
        self.pending: dict[tuple[str, int | str, str], list[_Pending]] = {}
        self.errors = 0
        # the last answer per (client, port, KDC) over UDP, for DUPLICATE_WINDOW seconds
        self._answers: dict[tuple[str, int | str, str], tuple[bytes, float]] = {}
        self._answer_times: deque[tuple[float, tuple[str, int | str, str]]] = deque()

    def on_message(
        self,
        data: bytes,
        *,
        ts: float,
        frame: int,
        src: str,
        sport: int,
        dst: str,
        dport: int,
        conn: int | None,
        transport: str,
    ) -> None:
        if conn is None and self._seen_again(data, ts, src, sport, dst, dport):
            return  # the same message seen again, not a new one
        try:
            msg = kerberos.parse(data)
        except MalformedError:
            self.errors += 1
            return
        is_request = msg.msg_type in (10, 12)
        spn = msg.sname
        user = msg.cname
        realm = msg.crealm or msg.realm
        # the service's realm: the request body's for requests, the ticket's for replies
        where = ("req_body",) if is_request else ("ticket", "top")
        service_realm = next(
            (p.realm for p in msg.principals if p.kind == "sname" and p.where in where and p.realm), msg.realm
        )
        exchange = AuthExchange(
            time=ts,
            frame=frame,
            transport="kdc",
            protocol="kerberos",
            message=msg.name,
            src=src,
            dst=dst,
            user=user,
            realm=service_realm,
            spn=spn,
            error_code=msg.error_code,
            cname=principal(user, realm),
            conn=conn,
        )
        if is_request:
            key = (src, conn if conn is not None else sport, dst)
            step = Step(
                step="kerberos",
                time=ts,
                end=ts,
                frame=frame,
                src=src,
                dst=dst,
                method=msg.name.upper(),
                url=spn,
                status=None,
                auth="kerberos",
                detail="",
                result="none",
                client=src,
                client_port=sport,
                server_port=dport,
                conn=conn,
                transport=transport,
            )
            step.facts["lync"] = False
            step.facts["realm"] = msg.realm
            step.facts["etypes"] = list(msg.etypes)
            if msg.name == "as-req":
                step.facts["preauth"] = 2 in msg.padata_types
                if user:
                    step.evidence.append(
                        Evidence("account", principal(user, msg.realm) or user, "Kerberos AS-REQ cname")
                    )
            if spn:
                step.facts["spn"] = spn
            self.out.add_auth(step, exchange)
            self.pending.setdefault(key, []).append(_Pending(step, msg, bytes(data) if conn is None else b""))
            return
        key = (dst, conn if conn is not None else dport, src)
        queue = self.pending.get(key)
        if not queue:
            self.out.add_auth(None, exchange)  # an answer whose request was not captured
            return
        p = queue.pop(0)
        if not queue:
            del self.pending[key]
        if conn is None:
            self._answers[key] = (bytes(data), ts)
            self._answer_times.append((ts, key))
        self.out.add_auth(p.step, exchange)
        self._answer(p, msg, ts)

    def _seen_again(self, data: bytes, ts: float, src: str, sport: int, dst: str, dport: int) -> bool:
        """Is this UDP datagram one already seen: a request still waiting for its answer, or the
        answer just given, byte for byte, within DUPLICATE_WINDOW?"""
        times = self._answer_times
        while times and times[0][0] < ts - DUPLICATE_WINDOW:
            _t, old = times.popleft()
            seen = self._answers.get(old)
            if seen is not None and seen[1] < ts - DUPLICATE_WINDOW:
                del self._answers[old]
        waiting = self.pending.get((src, sport, dst))
        if waiting and any(p.raw == data and ts - p.step.time <= DUPLICATE_WINDOW for p in waiting):
            return True
        answer = self._answers.get((dst, dport, src))
        return answer is not None and answer[0] == data and ts - answer[1] <= DUPLICATE_WINDOW

    def _answer(self, p: _Pending, msg: kerberos.KerberosMessage, ts: float) -> None:
        step = p.step
        step.end = ts
        if msg.name == "krb-error":
            code = msg.error_code or 0
            step.status = msg.error_name or f"KRB-ERROR {code}"
            meaning = tables.kerberos_error_meaning(code)
            step.facts["error_code"] = code
            if code in CHALLENGE_ERRORS:
                step.result = "challenge"
                step.detail = f"{step.status}: {meaning}" if meaning else str(step.status)
            else:
                step.result = "failure"
                step.failure_reason = f"Kerberos: {meaning or step.status}"
                step.failure_evidence = f"KRB-ERROR {code} {msg.error_name or ''}".strip() + (
                    f' e-text "{msg.e_text}"' if msg.e_text else ""
                )
                if code == 7 and p.msg.sname:
                    step.failure_reason = (
                        f"Kerberos: the SPN {p.msg.sname} is not registered; the client falls back to NTLM"
                    )
                step.detail = step.failure_evidence
        else:
            step.status = msg.name
            step.result = "success"
            if msg.cname:
                step.evidence.append(
                    Evidence(
                        "account",
                        principal(msg.cname, msg.crealm or msg.realm) or msg.cname,
                        f"Kerberos {msg.name.upper()} cname",
                    )
                )
            if msg.enc_etype is not None:
                step.facts["ticket_etype"] = msg.enc_etype
            step.detail = f"ticket for {p.msg.sname or msg.sname}" + (
                f" (etype {kerberos.ETYPE_NAMES.get(msg.enc_etype, msg.enc_etype)})"
                if msg.enc_etype is not None
                else ""
            )
        self.out.add_step(step)

    def expire(self, now: float) -> None:
        """Requests sent TIMEOUT seconds or more before `now` without an answer have timed out."""
        stale = []
        for key, queue in self.pending.items():  # keys in the order their first request came
            if queue[0].step.time + TIMEOUT > now:
                break
            stale.append(key)
        for key in stale:
            queue = self.pending[key]
            while queue and queue[0].step.time + TIMEOUT <= now:
                self._unanswered(queue.pop(0))
            if not queue:
                del self.pending[key]

    def finish(self) -> None:
        for queue in self.pending.values():
            for p in queue:
                self._unanswered(p)
        self.pending.clear()

    def _unanswered(self, p: _Pending) -> None:
        p.step.result = "none"
        p.step.detail = "no answer from the KDC"
        self.out.add_step(p.step)
