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

import ipaddress
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from lyncpcap.model import Session, Step
from lyncpcap.steps import tables
from lyncpcap.steps.common import account_key

IDLE_GAP = 300.0
ATTACH_SLACK = 30.0
PRIMARY = frozenset({"autodiscover", "mex", "webticket", "oauth", "adfs", "certprov", "sip-register", "ucwa"})
LYNC_CREDENTIAL_STEPS = frozenset({"webticket", "oauth", "sip-register", "certprov"})
PRIMARY_CREDENTIALS = ("kerberos", "ntlm", "soap", "password", "anonymous", "passive", "digest")


@dataclass(slots=True)
class _Builder:
    client: str
    steps: list[Step] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)  # normalised
    sip_uris: set[str] = field(default_factory=set)
    families: set[str] = field(default_factory=set)
    last: float = 0.0
    credentials_seen: bool = False
    conns: set[int] = field(default_factory=set)

    def compatible(self, step: Step) -> bool:
        acc = {account_key(v) for v in step.evidence_of("account")}
        if acc and self.accounts and not (acc & self.accounts):
            return False
        sips = {v.lower() for v in step.evidence_of("sip_uri")}
        if sips and self.sip_uris and not (sips & self.sip_uris):
            return False
        fam = _family(step)
        return not (fam and self.families and fam not in self.families)

    def add(self, step: Step) -> None:
        self.steps.append(step)
        self.accounts |= {account_key(v) for v in step.evidence_of("account")}
        self.sip_uris |= {v.lower() for v in step.evidence_of("sip_uri")}
        fam = _family(step)
        if fam:
            self.families.add(fam)
        self.last = max(self.last, step.end, step.time)
        if step.credential:
            self.credentials_seen = True
        if step.conn is not None:
            self.conns.add(step.conn)


def _family(step: Step) -> str | None:
    for ua in step.evidence_of("user_agent"):
        m = tables.client_of(ua)
        if m:
            return "desktop" if m.family == "desktop" else m.family
    return None


def _discovery_start(step: Step) -> bool:
    if step.step == "dns":
        return bool(step.facts.get("discover"))
    return step.step == "autodiscover" and bool(step.facts.get("discovery_start"))


def _is_primary(step: Step) -> bool:
    if step.step in PRIMARY:
        return True
    if step.step == "dns":
        return bool(step.facts.get("lync"))
    if step.step == "other":
        return bool(step.facts.get("lync")) and step.transport != "udp"
    return False


def build(steps: list[Step]) -> list[Session]:
    ordered = sorted(steps, key=lambda s: (s.time, s.frame))
    builders: list[_Builder] = []
    by_client: dict[str, list[_Builder]] = defaultdict(list)
    by_conn: dict[int, _Builder] = {}
    for step in ordered:
        if not _is_primary(step):
            continue
        target = None
        if step.conn is not None and step.conn in by_conn:
            cand = by_conn[step.conn]
            if cand.compatible(step) and step.client == cand.client:
                target = cand
        if target is None:
            for cand in reversed(by_client[step.client]):
                if step.time - cand.last > IDLE_GAP:
                    continue
                if not cand.compatible(step):
                    continue
                if _discovery_start(step) and cand.credentials_seen:
                    continue
                target = cand
                break
        if target is None:
            target = _Builder(client=step.client)
            builders.append(target)
            by_client[step.client].append(target)
        target.add(step)
        if step.conn is not None:
            by_conn[step.conn] = target
    _attach_secondary(ordered, builders)
    builders.sort(key=lambda b: min(s.time for s in b.steps))
    sessions = []
    for i, b in enumerate(builders, 1):
        sessions.append(_judge(f"s{i}", b))
    return sessions


def _server_names(b: _Builder) -> tuple[set[str], set[str]]:
    hosts: set[str] = set()
    addrs: set[str] = set()
    for s in b.steps:
        if s.step == "dns":
            continue
        addrs.add(s.dst)
        host = s.facts.get("host")
        if isinstance(host, str):
            hosts.add(host.split(":")[0].lower())
        fqdn = s.facts.get("server_fqdn")
        if isinstance(fqdn, str):
            hosts.add(fqdn.lower())
        for key in ("sip_access",):
            acc = s.facts.get(key)
            if isinstance(acc, dict):
                for v in acc.values():
                    if v:
                        hosts.add(str(v).split(":")[0].lower())
        if s.step == "sip-register" and s.url:
            hosts.add(s.url.split(":", 1)[-1].split(";")[0].lower())
    return hosts, addrs


def _attach_secondary(ordered: list[Step], builders: list[_Builder]) -> None:
    by_client: dict[str, list[_Builder]] = defaultdict(list)
    for b in builders:
        by_client[b.client].append(b)
    info = {id(b): _server_names(b) for b in builders}
    spans = {id(b): (min(s.time for s in b.steps), max(s.end for s in b.steps)) for b in builders}
    for step in ordered:
        if _is_primary(step) or step.session is not None:
            continue
        cands = by_client.get(step.client) or []
        best: _Builder | None = None
        best_dist = None
        for b in cands:
            start, end = spans[id(b)]
            if not (start - ATTACH_SLACK <= step.time <= end + ATTACH_SLACK):
                continue
            hosts, addrs = info[id(b)]
            related = False
            if step.step == "kerberos":
                spn = (step.url or "").lower()
                host = spn.split("/", 1)[1].split("@")[0] if "/" in spn else ""
                related = spn.startswith("krbtgt/") or host in hosts or (spn.startswith(("http/", "sip/")) and bool(host))
                acc = {account_key(v) for v in step.evidence_of("account")}
                if acc and b.accounts and not (acc & b.accounts):
                    related = False
            elif step.step == "dns":
                name = (step.url or "").lower()
                answers = set(step.facts.get("addresses") or [])
                related = name in hosts or bool(answers & addrs)
            else:
                host = str(step.facts.get("host") or "").split(":")[0].lower()
                related = step.dst in addrs or host in hosts
            if not related:
                continue
            dist = 0.0 if start <= step.time <= end else min(abs(step.time - start), abs(step.time - end))
            if best is None or best_dist is None or dist < best_dist:
                best, best_dist = b, dist
        if best is not None:
            best.steps.append(step)


# --------------------------------------------------------------------------------------------
# judging a session
# --------------------------------------------------------------------------------------------

STRONG = ("AccessLocation", "X-MS-Namespace", "ms-user-logon-data")


def _location(steps: list[Step], client: str) -> tuple[str, list[str]]:
    strong: Counter[str] = Counter()
    medium: Counter[str] = Counter()
    seen: dict[tuple[str, str], list[int]] = {}  # (verdict, signal) → frames, first seen first
    for s in steps:
        for e in s.evidence:
            if e.kind == "location":
                bucket = strong if e.source.startswith(STRONG) else medium
                bucket[e.value] += 1
                seen.setdefault((e.value, e.source), []).append(s.frame)
    evidence = [
        f"{value}: {source} (frame {frames[0]}" + (f", and {len(frames) - 1} more)" if len(frames) > 1 else ")")
        for (value, source), frames in seen.items()
    ]
    # which lyncdiscover name the client could use
    disc = {s.facts.get("discover"): s for s in steps if s.step == "dns" and s.facts.get("discover")}
    internal_dns = disc.get("internal")
    if internal_dns is not None:
        if internal_dns.result == "info":
            medium["internal"] += 1
            evidence.append(f"internal: {internal_dns.url} resolved (frame {internal_dns.frame})")
        elif "external" in disc and disc["external"].result == "info":
            medium["external"] += 1
            evidence.append(
                f"external: {internal_dns.url} did not resolve, {disc['external'].url} did (frame {disc['external'].frame})"
            )
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
            if ip.version == 4 and any(ip in ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")):
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
    relevant = [s for s in steps if s.step != "other"]
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
    if any(s.result == "success" and (s.credential or s.step in ("autodiscover", "certprov")) for s in relevant):
        return "success", None
    return "incomplete", None


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


def client_summary(sessions: list[Session]) -> list[dict[str, object]]:
    """CONTRACT CLIENT_SUMMARY rows: one per (client kind, location)."""
    groups: dict[tuple[str, str], list[Session]] = defaultdict(list)
    for s in sessions:
        groups[(s.client_kind, s.location)].append(s)
    rows = []
    for (kind, location), group in sorted(groups.items()):
        protocols = sorted({s.auth_protocol for s in group})
        rows.append(
            {
                "kind": kind,
                "location": location,
                "auth_protocols": protocols,
                "sessions": len(group),
                "succeeded": sum(1 for s in group if s.outcome == "success"),
                "failed": sum(1 for s in group if s.outcome == "failure"),
                "median_duration_s": round(statistics.median(s.duration for s in group), 6),
            }
        )
    return rows
