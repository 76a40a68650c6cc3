"""DNS lookups as `dns` steps: query/answer pairing, NXDOMAIN, timeouts, and Lync discovery names.

Lync names are those of PROTOCOL.md §1.1–§1.3 (`lyncdiscover[internal]`, SIP SRV, `sip*.` A records).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lyncpcap.errors import MalformedError
from lyncpcap.model import Evidence, Step
from lyncpcap.protocols import dns
from lyncpcap.steps.common import Collector

LYNC_NAME = re.compile(
    r"^(lyncdiscoverinternal|lyncdiscover|_sipinternaltls\._tcp|_sipinternal\._tcp|_sip\._tls|_sip\._tcp|"
    r"_sipfederationtls\._tcp|sipinternal|sipexternal|sip|ucupdates-r2|_ntp\._udp)\.",
    re.IGNORECASE,
)
RETRY_WINDOW = 10.0  # a repeated query for the same name within this many seconds is a retry
#: A query unanswered this long has timed out (the Windows resolver gives up after about 10 s,
#: 1 + 1 + 2 + 4 s between its tries): it becomes its failed step then, in time order with the
#: steps around it, rather than at the end of the capture.  A later answer pairs with nothing.
TIMEOUT = 30.0


def lync_name(name: str) -> bool:
    return bool(LYNC_NAME.match(name))


def srv_domain(name: str) -> str:
    """The domain of an SRV name (`_sipinternaltls._tcp.contoso.com` → `contoso.com`)."""
    labels = name.rstrip(".").lower().split(".")
    return ".".join(labels[2:]) if len(labels) > 2 and labels[0].startswith("_") else ".".join(labels)


def _within(host: str, domain: str) -> bool:
    h = host.rstrip(".").lower()
    return h == domain or h.endswith("." + domain)


@dataclass(slots=True)
class _Pending:
    step: Step
    qid: int


class DnsClassifier:
    def __init__(self, out: Collector) -> None:
        self.out = out
        self.pending: dict[tuple[str, int, str, int], _Pending] = {}
        self.errors = 0

    def on_datagram(self, data: bytes, *, ts: float, frame: int, src: str, sport: int, dst: str, dport: int, conn: int | None = None, transport: str = "udp") -> None:
        try:
            msg = dns.parse(data)
        except MalformedError:
            self.errors += 1
            return
        if not msg.questions:
            return
        qname, qtype = msg.questions[0]
        if not msg.is_response:
            key = (src, sport, dst, msg.id)
            if key in self.pending:
                self.pending[key].step.facts["retries"] = self.pending[key].step.facts.get("retries", 0) + 1
                return
            step = Step(
                step="dns",
                time=ts,
                end=ts,
                frame=frame,
                src=src,
                dst=dst,
                method=dns.TYPE_NAMES.get(qtype, str(qtype)),
                url=qname,
                status=None,
                auth=None,
                detail="",
                result="none",
                client=src,
                client_port=sport,
                server_port=dport,
                conn=conn,
                transport=transport,
            )
            step.facts["lync"] = lync_name(qname)
            step.facts["qname"] = qname.lower()
            low = qname.lower()
            if low.startswith("lyncdiscoverinternal."):
                step.facts["discover"] = "internal"
            elif low.startswith("lyncdiscover."):
                step.facts["discover"] = "external"
            elif low.startswith(("_sipinternaltls._tcp.", "_sipinternal._tcp.")):
                step.facts["discover_srv"] = "internal"  # published only in the internal zone
            elif low.startswith(("_sip._tls.", "_sip._tcp.")):
                step.facts["discover_srv"] = "external"
            step.facts["domain"] = low.split(".", 1)[1] if "." in low else low
            self.pending[key] = _Pending(step, msg.id)
            return
        key = (dst, dport, src, msg.id)
        p = self.pending.pop(key, None)
        if p is None:
            return
        step = p.step
        step.end = ts
        step.status = msg.rcode_name
        answers = [a for a in msg.answers]
        addrs = [a.value for a in answers if a.rtype in (1, 28)]
        cnames = [a.value for a in answers if a.rtype == 5]
        srv = [(a.srv_target, a.srv_port) for a in answers if a.rtype == 33 and a.srv_target]
        step.facts["addresses"] = addrs
        extra = [a.value for a in msg.additional if a.rtype in (1, 28)]
        if extra:
            step.facts["additional_addresses"] = extra
        if cnames:
            step.facts["cnames"] = cnames
        if srv:
            step.facts["srv"] = [f"{t}:{p}" for t, p in srv]
            sip_domain = srv_domain(qname) if step.facts.get("discover_srv") else None
            foreign = sorted({t.rstrip(".").lower() for t, _ in srv if sip_domain and not _within(t, sip_domain)})
            if foreign:
                # PROTOCOL.md §1.1: the client does not trust a registrar outside the SIP domain
                step.facts["srv_foreign_targets"] = foreign
                step.facts["sip_domain"] = sip_domain
        if msg.rcode == 0 and answers:
            step.result = "info"
            shown = [f"{a.value}" for a in answers if a.rtype in (1, 28, 5, 33)]
            step.detail = ", ".join(shown[:6]) + ("…" if len(shown) > 6 else "")
            disc = step.facts.get("discover")
            if disc:
                step.evidence.append(Evidence("discover_answered", disc, f"{step.url} answered"))
            if step.facts.get("srv_foreign_targets"):
                step.detail += (f"; {', '.join(step.facts['srv_foreign_targets'])} is outside {step.facts['sip_domain']}: "
                                "the client does not trust it for this sign-in address")
        elif msg.rcode == 0 and qtype == dns.TYPE_AAAA:
            # NODATA: the name exists, without an IPv6 address.  Windows asks for both A and AAAA;
            # an IPv4-only deployment answers the second with nothing, and that is no failure.
            step.result = "info"
            step.detail = f"{step.url}: no IPv6 address (AAAA)"
        else:
            step.result = "failure"
            what = msg.rcode_name if msg.rcode else "no record of that type"
            step.detail = f"{step.url} {step.method}: {what}"
            step.failure_reason = f"DNS: {step.url} does not resolve ({what})"
            step.failure_evidence = f"DNS {msg.rcode_name} for {step.url} {step.method}"
        self.out.add_step(step)

    def expire(self, now: float) -> None:
        """Queries sent TIMEOUT seconds or more before `now` without an answer have timed out."""
        stale = []
        for key, p in self.pending.items():  # in the order they were asked
            if p.step.time + TIMEOUT > now:
                break
            stale.append(key)
        for key in stale:
            self._timed_out(self.pending.pop(key))

    def finish(self) -> None:
        for p in self.pending.values():
            self._timed_out(p)
        self.pending.clear()

    def _timed_out(self, p: _Pending) -> None:
        step = p.step
        step.status = "timeout"
        step.result = "failure"
        step.detail = "no DNS answer seen"
        step.failure_reason = f"DNS: no answer for {step.url}"
        step.failure_evidence = f"no response to the {step.method} query for {step.url}"
        self.out.add_step(step)
