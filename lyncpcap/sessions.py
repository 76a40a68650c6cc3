"""Group steps into sign-in sessions and judge each one: who, from where, how, and did it work.

A session is one client's attempt to sign in (CONTRACT.md).  Boundaries, in order:
  1. a different client address (X-Forwarded-For / Via `received` when present) → different session;
  2. conflicting identity evidence of the same kind (two accounts, two SIP URIs) → different session;
  3. a different client family (desktop vs browser vs mobile, from the User-Agent) → different session;
  4. more than IDLE_GAP seconds without a step → new session;
  5. a fresh discovery (lyncdiscover lookup or Autodiscover root) after credentials were already
     presented → a new attempt, hence a new session.
Steps on one TCP connection stay together unless rule 2 splits them.  Kerberos, DNS and other web
requests attach afterwards to the session of the same client they belong to.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from lyncpcap.model import Session, Step
from lyncpcap.steps import tables
from lyncpcap.steps.common import account_key

IDLE_GAP = 300.0
ATTACH_SLACK = 30.0
LAG = 120.0  # a step may complete this long after it started and still be grouped in order
PRIMARY = frozenset({"autodiscover", "mex", "webticket", "oauth", "adfs", "certprov", "sip-register", "ucwa"})
LYNC_CREDENTIAL_STEPS = frozenset({"webticket", "oauth", "sip-register", "certprov"})
PRIMARY_CREDENTIALS = ("kerberos", "ntlm", "soap", "password", "anonymous", "passive", "digest")


@dataclass(slots=True, eq=False)
class _Builder:
    client: str
    number: int = 0  # the session's id number, in order of the sessions' first sign-in step
    start: float = 0.0
    close_at: float = 0.0
    closed: bool = False
    steps: list[Step] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)  # normalised
    sip_uris: set[str] = field(default_factory=set)
    families: set[str] = field(default_factory=set)
    last: float = 0.0
    credentials_seen: bool = False
    conns: set[int] = field(default_factory=set)

    def compatible(self, ident: _Identity) -> bool:
        acc, sips, fam = ident
        if acc and self.accounts and not (acc & self.accounts):
            return False
        if sips and self.sip_uris and not (sips & self.sip_uris):
            return False
        return not (fam and self.families and fam not in self.families)

    def add(self, step: Step, ident: _Identity) -> None:
        self.steps.append(step)
        acc, sips, fam = ident
        self.accounts |= acc
        self.sip_uris |= sips
        if fam:
            self.families.add(fam)
        self.last = max(self.last, step.end, step.time)
        if step.credential:
            self.credentials_seen = True
        if step.conn is not None:
            self.conns.add(step.conn)


#: What the grouping rules compare of a step: its accounts (normalised), SIP URIs (lower case)
#: and client family — worked out once per step.
_Identity = tuple[set[str], set[str], str | None]


def _identity_of(step: Step) -> _Identity:
    accounts: set[str] = set()
    sips: set[str] = set()
    for e in step.evidence:
        if e.kind == "account":
            accounts.add(account_key(e.value))
        elif e.kind == "sip_uri":
            sips.add(e.value.lower())
    return accounts, sips, _family(step)


def _family(step: Step) -> str | None:
    for ua in step.evidence_of("user_agent"):
        m = tables.client_of(ua)
        if m:
            if m.family == "browser" and step.step == "adfs":
                # passive authentication runs in a browser control the client embeds (Internet
                # Explorer's in the desktop client, a web view on phones: PROTOCOL.md §10.7, §10.8),
                # whose User-Agent is a browser's: it names no other client
                return None
            return "desktop" if m.family == "desktop" else m.family
    return None


def _discovery_start(step: Step) -> bool:
    if step.step == "dns":
        return bool(step.facts.get("discover"))
    return step.step == "autodiscover" and bool(step.facts.get("discovery_start"))


def _activity(step: Step) -> bool:
    """What a client already signed in does with what it holds: a REGISTER signed with the security
    association that succeeds (a registration refresh, or a sign-in's last REGISTER), a UCWA or
    Lync web request that presents a ticket or token issued before, and succeeds — or is still
    waiting when the capture ends (UCWA's event channel always is).  It joins the sign-in it comes
    with; alone — a refresh every few minutes of a long capture — it starts no session.  Refused,
    it stays a sign-in step: the client signs in again, and that is why."""
    if step.result not in ("success", "none") or (step.credential and not step.facts.get("signed")):
        return False
    if step.step == "sip-register":
        return bool(step.facts.get("signed"))
    if step.step in ("ucwa", "other"):
        return bool(step.facts.get("ticket") or step.facts.get("fedauth_cookie")) and not step.facts.get("goal")
    return False


def _is_primary(step: Step) -> bool:
    if _activity(step):
        return False
    if step.step in PRIMARY:
        return True
    if step.step == "dns":
        return bool(step.facts.get("lync"))
    if step.step == "other":
        return bool(step.facts.get("lync")) and step.transport != "udp"
    return False


class SessionBuilder:
    """Groups steps into sessions as they come, and hands over each session once it is closed.

    Steps arrive in the order the engine completes them (an answer can come long after its
    request started), so they wait in a heap and are processed in start-time order once no
    earlier step can still arrive (LAG seconds behind the newest completion seen).  A session
    closes when its client has been idle for IDLE_GAP + ATTACH_SLACK: no later step can join it
    (rule 4) or be attached to it.  Memory then follows the sessions in progress, not the capture.
    """

    def __init__(
        self,
        on_session: Callable[[Session], None],
        on_unattached: Callable[[Step], None] | None = None,
        *,
        lag: float = LAG,
    ) -> None:
        self.on_session = on_session
        self.on_unattached = on_unattached or (lambda step: None)
        self.lag = lag
        self._heap: list[tuple[float, int, int, Step]] = []
        self._seq = 0
        self._newest = -math.inf  # latest completion time seen
        self._done_until = -math.inf  # steps starting before this have been processed
        self._next_id = 1
        self._open: dict[str, list[_Builder]] = defaultdict(list)  # client → open builders, oldest first
        self._by_conn: dict[int, _Builder] = {}
        self._deadlines: list[tuple[float, int, _Builder]] = []  # (close time, builder id, builder)
        self._pending: dict[str, list[Step]] = defaultdict(list)  # client → secondary steps, by time
        self._pending_heap: list[tuple[float, int, Step]] = []
        self.late = 0  # sign-in (primary) steps that arrived after later ones had been processed

    # -- feeding ----------------------------------------------------------------------------------
    def add(self, step: Step) -> None:
        heapq.heappush(self._heap, (step.time, step.frame, self._seq, step))
        self._seq += 1
        if step.end > self._newest:
            self._newest = step.end
        horizon = self._newest - self.lag
        if self._heap[0][0] <= horizon:
            self._advance(horizon)

    def finish(self) -> None:
        """The capture ended: process everything and close every session, oldest first."""
        self._advance(math.inf)

    # -- processing ---------------------------------------------------------------------------------
    def _advance(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            step = heapq.heappop(heap)[3]
            primary = _is_primary(step)
            if step.time >= self._done_until:
                self._done_until = step.time
            elif primary:  # a secondary one late (a UCWA long poll) waits for its session like any
                self.late += 1
            if primary:
                self._assign(step)
            else:
                self._pending[step.client].append(step)
                heapq.heappush(self._pending_heap, (step.time, self._seq, step))
                self._seq += 1
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < until:
            due, _, b = heapq.heappop(deadlines)
            if not b.closed and due == b.close_at:
                self._close(b)
        self._release(until)

    def _assign(self, step: Step) -> None:
        target = None
        ident = _identity_of(step)
        cand = self._by_conn.get(step.conn) if step.conn is not None else None
        if (
            cand is not None
            and not cand.closed
            and cand.client == step.client
            and step.time - cand.last <= IDLE_GAP
            and cand.compatible(ident)
        ):
            target = cand
        if target is None:
            for cand in reversed(self._open.get(step.client, ())):
                if step.time - cand.last > IDLE_GAP:
                    continue
                if not cand.compatible(ident):
                    continue
                if _discovery_start(step) and cand.credentials_seen:
                    continue
                target = cand
                break
        if target is None:
            target = _Builder(client=step.client, number=self._next_id, start=step.time)
            self._next_id += 1
            self._open[step.client].append(target)
        target.add(step, ident)
        target.close_at = target.last + IDLE_GAP + ATTACH_SLACK
        heapq.heappush(self._deadlines, (target.close_at, target.number, target))
        if step.conn is not None:
            self._by_conn[step.conn] = target

    def _close(self, b: _Builder) -> None:
        b.closed = True
        opened = self._open[b.client]
        opened.remove(b)
        if not opened:
            del self._open[b.client]
        # secondary steps (DNS, KDC, other web) of this client that belong here rather than with a
        # session still open
        hosts, addrs = _server_names(b)
        end = max(s.end for s in b.steps)
        keep = []
        for step in self._pending.get(b.client, ()):
            if step.session is not None:
                continue
            dist = _distance(b.start, end, step.time)
            if dist is None or not _related(step, b, hosts, addrs):
                keep.append(step)
                continue
            better = any(
                (d := _distance(o.start, o.last, step.time)) is not None and d < dist
                for o in opened
            )
            if better:
                keep.append(step)
            else:
                step.session = f"s{b.number}"
                b.steps.append(step)
        if keep:
            self._pending[b.client] = keep
        else:
            self._pending.pop(b.client, None)
        for conn in b.conns:
            if self._by_conn.get(conn) is b:
                del self._by_conn[conn]
        self.on_session(_judge(f"s{b.number}", b))

    def _release(self, until: float) -> None:
        """Secondary steps no session can claim any more become unattached."""
        heap = self._pending_heap
        while heap and heap[0][0] + ATTACH_SLACK < until:
            t, _, step = heap[0]
            if step.session is not None:
                heapq.heappop(heap)
                continue
            # an open session that started early enough may still claim it when it closes
            if until != math.inf and any(b.start - ATTACH_SLACK <= t for b in self._open.get(step.client, ())):
                break
            heapq.heappop(heap)
            lst = self._pending.get(step.client)
            if lst is not None:
                try:
                    lst.remove(step)
                except ValueError:
                    pass
                if not lst:
                    del self._pending[step.client]
            self.on_unattached(step)


def build(steps: list[Step]) -> tuple[list[Session], list[Step]]:
    """All sessions of a list of steps (and the steps no session claimed), sessions by id."""
    sessions: list[Session] = []
    unattached: list[Step] = []
    builder = SessionBuilder(sessions.append, unattached.append)
    for step in sorted(steps, key=lambda s: (s.time, s.frame)):
        builder.add(step)
    builder.finish()
    sessions.sort(key=lambda s: int(s.id[1:]))
    return sessions, unattached


def _distance(start: float, end: float, t: float) -> float | None:
    if not (start - ATTACH_SLACK <= t <= end + ATTACH_SLACK):
        return None
    return 0.0 if start <= t <= end else min(abs(t - start), abs(t - end))


def _server_names(b: _Builder) -> tuple[set[str], set[str]]:
    hosts: set[str] = set()
    addrs: set[str] = set()
    for s in b.steps:
        if s.step == "dns":
            # the servers the sign-in's own discovery lookups pointed at
            addrs.update(s.facts.get("addresses") or ())
            continue
        addrs.add(s.dst)
        host = s.facts.get("host")
        if isinstance(host, str):
            hosts.add(host.split(":")[0].lower())
        fqdn = s.facts.get("server_fqdn")
        if isinstance(fqdn, str):
            hosts.add(fqdn.lower())
        acc = s.facts.get("sip_access")
        if isinstance(acc, dict):
            for v in acc.values():
                if v:
                    hosts.add(str(v).split(":")[0].lower())
        if s.step == "sip-register" and s.url:
            hosts.add(s.url.split(":", 1)[-1].split(";")[0].lower())
    return hosts, addrs


def _related(step: Step, b: _Builder, hosts: set[str], addrs: set[str]) -> bool:
    """Does a DNS lookup, KDC exchange or other web request belong to this sign-in?"""
    if step.step == "kerberos":
        spn = (step.url or "").lower()
        host = spn.split("/", 1)[1].split("@")[0] if "/" in spn else ""
        related = spn.startswith("krbtgt/") or host in hosts or (spn.startswith(("http/", "sip/")) and bool(host))
        acc = {account_key(v) for v in step.evidence_of("account")}
        return related and not (acc and b.accounts and not (acc & b.accounts))
    if step.step == "dns":
        name = (step.url or "").lower()
        answers = set(step.facts.get("addresses") or [])
        return name in hosts or bool(answers & addrs)
    host = str(step.facts.get("host") or "").split(":")[0].lower()
    return step.dst in addrs or host in hosts


# --------------------------------------------------------------------------------------------
# judging a session
# --------------------------------------------------------------------------------------------

STRONG = ("AccessLocation", "X-MS-Namespace", "ms-user-logon-data")


#: The Front End's external web site, where the reverse proxy sends what it publishes on 443/80
#: (PROTOCOL.md §0, [C CSSVC]).
EXTERNAL_WEB_PORTS = frozenset({4443, 8080})
#: The Access Edge's port for clients (a registrar inside listens on 5061).
EDGE_SIP_PORT = 443


def _port_signal(step: Step) -> str | None:
    """Where a port says the client came from (PROTOCOL.md §12 item 4): Lync web requests to the
    Front End's external web site came through the reverse proxy; a REGISTER to port 443 went to
    the Access Edge.  None when the port says nothing."""
    if step.step in WEB_SIGNAL_STEPS and step.server_port in EXTERNAL_WEB_PORTS and not step.facts.get("via_forward_proxy"):
        # (a forward proxy inside listens on 8080 too, but is sent absolute URLs or CONNECT)
        return f"web services on port {step.server_port}, the Front End's external web site (behind the reverse proxy)"
    if step.step == "sip-register" and step.server_port == EDGE_SIP_PORT:
        return "REGISTER to port 443, the Access Edge"
    return None


WEB_SIGNAL_STEPS = frozenset({"autodiscover", "mex", "webticket", "oauth", "certprov", "ucwa"})


def _resolved(step: Step) -> bool:
    """A lookup that got an address, alias or SRV record (not an empty NOERROR: an AAAA query of
    an IPv4-only name)."""
    f = step.facts
    return step.result == "info" and bool(f.get("addresses") or f.get("cnames") or f.get("srv"))


def _discovery(steps: list[Step], fact: str) -> dict[str, Step]:
    """Per discovery kind ("internal", "external"), the lookup that says most: one that resolved,
    else one that failed (NXDOMAIN, no answer), else any.  Clients ask for A and AAAA, and ask
    again: no later lookup hides an earlier answer."""

    def rank(s: Step) -> int:
        return 2 if _resolved(s) else 1 if s.result == "failure" else 0

    best: dict[str, Step] = {}
    for s in steps:
        kind = s.facts.get(fact) if s.step == "dns" else None
        if kind and (kind not in best or rank(s) > rank(best[kind])):
            best[kind] = s
    return best


#: RFC 1918 and IPv6 unique local addresses: a hint of an inside client, never proof.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def _location(steps: list[Step], client: str) -> tuple[str, list[str]]:
    strong: Counter[str] = Counter()
    medium: Counter[str] = Counter()
    seen: dict[tuple[str, str], list[int]] = {}  # (verdict, signal) → frames, first seen first
    ports: set[str] = set()
    for s in steps:
        for e in s.evidence:
            if e.kind == "location":
                bucket = strong if e.source.startswith(STRONG) else medium
                bucket[e.value] += 1
                seen.setdefault((e.value, e.source), []).append(s.frame)
        signal = _port_signal(s)
        if signal is not None:
            ports.add(signal)
            seen.setdefault(("external", signal), []).append(s.frame)
    if ports:
        medium["external"] += len(ports)  # one vote per kind of port signal, however many requests
    evidence = [
        f"{value}: {source} (frame {frames[0]}" + (f", and {len(frames) - 1} more)" if len(frames) > 1 else ")")
        for (value, source), frames in seen.items()
    ]
    # which lyncdiscover name the client could use
    disc = _discovery(steps, "discover")
    srv = _discovery(steps, "discover_srv")
    # lyncdiscover first; the SIP SRV names (clients before Lync 2013, and the fallback when
    # Autodiscover is not published) when those settle nothing.  The internal name is published
    # only in the internal zone: it resolving means inside; only the public one resolving, outside.
    for names in (disc, srv):
        internal_dns = names.get("internal")
        if internal_dns is None:
            continue
        if _resolved(internal_dns):
            medium["internal"] += 1
            evidence.append(f"internal: {internal_dns.url} resolved (frame {internal_dns.frame})")
            break
        if internal_dns.result == "failure" and "external" in names and _resolved(names["external"]):
            medium["external"] += 1
            evidence.append(
                f"external: {internal_dns.url} did not resolve, {names['external'].url} did (frame {names['external'].frame})"
            )
            break
    verdict = "unknown"
    if strong:
        if len(strong) == 1:
            verdict = next(iter(strong))
        else:
            evidence.append("conflict: the server's own verdicts disagree")
    elif medium:
        top = medium.most_common()
        if len(top) == 1 or top[0][1] > top[1][1]:
            verdict = top[0][0]
        else:
            evidence.append("conflict: signals disagree")
    if verdict == "unknown" and not strong and not medium:
        try:
            ip = ipaddress.ip_address(client)
            if any(ip.version == n.version and ip in n for n in _PRIVATE_NETWORKS):
                evidence.append(f"weak: {client} is a private address (not enough to decide)")
            elif ip.is_global:
                evidence.append(f"weak: {client} is a public address (not enough to decide)")
        except ValueError:
            pass
    return verdict, evidence


def _user_agent_and_kind(steps: list[Step]) -> tuple[str | None, str]:
    best: tuple[int, str, str] | None = None  # (rank, ua, kind)
    browserish = False
    for s in steps:
        for e in s.evidence:
            if e.kind not in ("user_agent", "app_user_agent"):
                continue
            m = tables.client_of(e.value)
            if m is None:
                rank, kind = 5, "unknown"
            elif m.family == "browser":
                rank, kind = 4, m.kind
                browserish = True
            elif m.family == "tool":
                rank, kind = 3, m.kind
            elif e.source.startswith("SIP"):
                rank, kind = 0, m.kind
            else:
                rank, kind = (1 if e.kind == "user_agent" else 2), m.kind
            if best is None or rank < best[0]:
                best = (rank, e.value, kind)
    if best is None:
        return None, "unknown"
    ua, kind = best[1], best[2]
    if best[0] == 4 or (browserish and best[0] >= 4):
        lwa = any(
            s.facts.get("kind") in ("lwa-meet", "lwa", "authbroker") or s.facts.get("browser_ucwa") for s in steps
        )
        if lwa:
            kind = tables.lwa_kind()
    if best[0] == 5:
        kind = "unknown"
    return ua, kind


def _identity(steps: list[Step]) -> tuple[str | None, dict[str, str]]:
    ids: dict[str, str] = {}
    account = None
    for s in sorted(steps, key=lambda x: (not x.credential, x.time)):
        for v in s.evidence_of("account"):
            if account is None:
                account = v
            ids.setdefault("account", v)
    for s in steps:
        for v in s.evidence_of("sip_uri"):
            ids.setdefault("sip_uri", v)
    return account or ids.get("sip_uri"), ids


def _auth_protocol(steps: list[Step]) -> str:
    lync = [s for s in steps if s.step in LYNC_CREDENTIAL_STEPS and s.auth]
    adfs = any(s.step == "adfs" and s.credential for s in steps)
    for group in (lync, [s for s in steps if s.auth and s.step not in ("kerberos",)]):
        creds = [s for s in group if s.auth in PRIMARY_CREDENTIALS]
        accepted = [s for s in creds if s.result == "success"]
        if accepted:
            return accepted[-1].auth or "unknown"
        if creds:
            attempted = [s for s in creds if s.credential] or creds
            return attempted[-1].auth or "unknown"
    if adfs:
        return "passive"
    for s in reversed(steps):
        if s.auth in ("tls-dsk", "certificate"):
            return s.auth
    return "unknown"


def _outcome(steps: list[Step]) -> tuple[str, dict[str, str] | None]:
    # other web requests do not decide a sign-in; a connection that could not be made does
    relevant = [s for s in steps if s.step != "other" or s.facts.get("connect_failure")]
    goal = [s for s in relevant if s.facts.get("goal") and s.result == "success"]
    final_failure: Step | None = None
    failures: list[Step] = []
    for s in relevant:
        if s.result == "failure":
            final_failure = s
            failures.append(s)
        elif s.result in ("success", "info", "challenge") and final_failure is not None and s.time >= final_failure.end:
            final_failure = None
    if goal:
        return "success", None
    if final_failure is not None:
        same = [f for f in failures if f.step == final_failure.step and f.failure_reason == final_failure.failure_reason]
        reason = final_failure.failure_reason or "request failed"
        if len(same) > 1:
            reason += f" ({len(same)} attempts)"
        return "failure", {
            "step": final_failure.step,
            "reason": reason,
            "evidence": final_failure.failure_evidence or final_failure.detail,
        }
    dead_end = _dead_end(relevant)
    if dead_end is not None:
        return "failure", dead_end
    if any(s.result == "success" and (s.credential or s.step in ("autodiscover", "certprov")) for s in relevant):
        return "success", None
    return "incomplete", None


#: redirects a client follows before it gives up (tools and clients stop after about three hops)
#: Redirects of one kind a sign-in may follow before it is going round, even to new places.
MAX_REDIRECTS = 8


def _redirect_loop(steps: list[Step]) -> dict[str, str] | None:
    """Autodiscover `Redirect` links or SIP 301s that bounce between pools (PROTOCOL.md §9.1, §9.6):
    a redirect to where an earlier one already sent the client, i.e. without progress (§12.5).  A
    chain of new places (HTTP to HTTPS, internal to external, Director to pool) is normal."""
    for kind in ("autodiscover", "sip-register"):
        hops = [s for s in steps if s.step == kind and s.facts.get("redirect")]
        places = [str(s.facts["redirect"]).strip().strip("<>").lower() for s in hops]
        if len(places) <= MAX_REDIRECTS and len(set(places)) == len(places):
            continue
        targets = [_host_of(str(s.facts["redirect"])) for s in hops]
        where = "Autodiscover" if kind == "autodiscover" else "SIP registration"
        chain = " → ".join([_host_of(hops[0].url or hops[0].dst), *targets])
        return {
            "step": kind,
            "reason": f"{where} redirects go round between pools ({len(hops)} redirects): a homing or topology problem",
            "evidence": f"redirects {chain} (frames {', '.join(str(s.frame) for s in hops)})",
        }
    return None


def _host_of(target: str) -> str:
    """The host of a URL or SIP Contact (`<sip:pool.contoso.com:5061;transport=tls>`)."""
    t = target.strip().strip("<>")
    if "://" in t:
        t = t.split("://", 1)[1]
    elif t.lower().startswith(("sip:", "sips:")):
        t = t.split(":", 1)[1]
    t = t.split("@")[-1]
    for sep in ("/", ";", ">", "?"):
        t = t.split(sep, 1)[0]
    if t.startswith("["):
        return t.split("]", 1)[0] + "]"
    return t.rsplit(":", 1)[0] if t.count(":") == 1 else t


#: web-ticket methods a client can use without AD FS (MEX port names, protocols/mex.py)
NON_PASSIVE_METHODS = frozenset({"windows", "ntlm", "password", "anonymous", "oauth", "pin"})


def _dead_end(steps: list[Step]) -> dict[str, str] | None:
    """A client that stopped where the pool asks for what it cannot give (PROTOCOL.md §9.5,
    "legacy client on a 2FA pool"): the web ticket service offers only passive (AD FS) and
    certificate tickets and the client never went to AD FS; or SIP offers only TLS-DSK and the
    client never got a certificate.  Nothing else happened after that point."""
    loop = _redirect_loop(steps)
    if loop is not None:
        return loop
    if any(s.step == "adfs" or s.credential for s in steps):
        return None
    lync = [s for s in steps if s.step not in ("dns", "kerberos", "other")]
    if lync and lync[-1].step == "autodiscover" and lync[-1].facts.get("bare_401"):
        last = lync[-1]
        return {
            "step": "autodiscover",
            "reason": (
                "the server asked for credentials itself, without X-MS-WebTicketURL or MsRtcOAuth: a reverse "
                "proxy pre-authenticates or strips Lync's headers (publish the Lync web services with "
                "pass-through authentication)"
            ),
            "evidence": f"HTTP {last.status} on {last.url} (frame {last.frame}); WWW-Authenticate: {last.facts['bare_401']}",
        }
    sip_dsk_only = [
        s
        for s in steps
        if s.step == "sip-register" and s.result == "challenge" and [o.lower() for o in s.facts.get("offered", ())] == ["tls-dsk"]
    ]
    last_sip = next((s for s in reversed(steps) if s.step == "sip-register"), None)
    sip_evidence = ""
    if sip_dsk_only and last_sip is sip_dsk_only[-1]:
        sip_evidence = f"; SIP 401 offers only TLS-DSK (frame {last_sip.frame})"
    else:
        sip_dsk_only = []
    mex = next((s for s in reversed(steps) if s.step == "mex" and s.facts.get("mex_methods")), None)
    if mex is not None:
        methods = list(mex.facts["mex_methods"])
        later = [s for s in steps if s.time > mex.time and s.step in ("webticket", "oauth", "certprov", "sip-register")]
        if "passive" in methods and not NON_PASSIVE_METHODS.intersection(methods) and not later:
            return {
                "step": "mex",
                "reason": (
                    "the pool requires two-factor sign-in: web tickets only through AD FS (passive) or a "
                    "certificate, and the client did not go to AD FS — a client without passive "
                    "authentication (Lync 2010, older mobile clients) cannot sign in to this pool"
                ),
                "evidence": f"MEX offers {', '.join(methods)} (frame {mex.frame}){sip_evidence}",
            }
    if sip_dsk_only and not any(s.step == "certprov" and s.result == "success" for s in steps):
        return {
            "step": "sip-register",
            "reason": "the registrar accepts only TLS-DSK (certificates) and the client obtained no certificate: it gave up",
            "evidence": sip_evidence.lstrip("; "),
        }
    return None


def _judge(sid: str, b: _Builder) -> Session:
    steps = sorted(b.steps, key=lambda s: (s.time, s.frame))
    for s in steps:
        s.session = sid
    ua, kind = _user_agent_and_kind(steps)
    location, loc_evidence = _location(steps, b.client)
    user, ids = _identity(steps)
    outcome, failure = _outcome(steps)
    return Session(
        id=sid,
        client_address=b.client,
        user_agent=ua,
        client_kind=kind,
        location=location,
        location_evidence=loc_evidence,
        user=user,
        identities=ids,
        auth_protocol=_auth_protocol(steps),
        outcome=outcome,
        failure=failure,
        start=min(s.time for s in steps),
        end=max(s.end for s in steps),
        steps=steps,
    )


class ClientSummary:
    """CONTRACT CLIENT_SUMMARY rows, accumulated session by session."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], list[tuple[str, str, float]]] = defaultdict(list)

    def add(self, s: Session) -> None:
        self._groups[(s.client_kind, s.location)].append((s.auth_protocol, s.outcome, s.duration))

    def rows(self) -> list[dict[str, object]]:
        rows = []
        for (kind, location), group in sorted(self._groups.items()):
            rows.append(
                {
                    "kind": kind,
                    "location": location,
                    "auth_protocols": sorted({auth for auth, _, _ in group}),
                    "sessions": len(group),
                    "succeeded": sum(1 for _, outcome, _ in group if outcome == "success"),
                    "failed": sum(1 for _, outcome, _ in group if outcome == "failure"),
                    "median_duration_s": round(statistics.median(d for _, _, d in group), 6),
                }
            )
        return rows


def client_summary(sessions: list[Session]) -> list[dict[str, object]]:
    """CONTRACT CLIENT_SUMMARY rows: one per (client kind, location)."""
    summary = ClientSummary()
    for s in sessions:
        summary.add(s)
    return summary.rows()
