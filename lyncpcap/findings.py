"""Security findings: how safely Lync is exposed, and attacks on it (seed: "Increase Lync 2013 security").

Two requirements come back in almost every project: domain credentials may not be used from outside,
and two-factor authentication is mandatory for external access.  Each finding carries its evidence
(sessions, frames, accounts, addresses) and advice.  Thresholds are parameters with stated defaults.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lyncpcap.model import DOMAIN_CREDENTIALS, AuthExchange, Finding, Session, Step
from lyncpcap.steps.common import account_key

PASSIVE_ADVICE = (
    "Publish sign-in through AD FS passive authentication with a second factor: create a web service "
    "configuration for the pool with the AD FS metadata (New-CsWebServiceConfiguration -Identity "
    '"Service:WebServer:<pool>" -UseWsFedPassiveAuth $true -WsFedPassiveMetadataUri '
    "https://<adfs>/federationmetadata/2007-06/federationmetadata.xml), turn the other methods off "
    "(Set-CsWebServiceConfiguration -UseWsFedPassiveAuth $true -UseWindowsAuth none -UseCertificateAuth "
    "$false), disable Kerberos and NTLM for SIP on the Edge and Registrar (New-CsProxyConfiguration "
    "-UseKerberosForClientToProxyAuth $false -UseNtlmForClientToProxyAuth $false), and add the Lync "
    "relying party trusts on AD FS (Add-ADFSRelyingPartyTrust -MetadataURL "
    "https://<pool>/passiveauth/federationmetadata/2007-06/federationmetadata.xml)."
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Tunable limits; the CLI exposes them with these defaults."""

    lockout_failures: int = 3  # failed authentications of one account …
    lockout_window_s: float = 600.0  # … within this many seconds
    spray_accounts: int = 5  # one source failing against at least this many accounts …
    spray_max_tries: int = 2  # … with at most this many tries each
    spray_window_s: float = 3600.0  # fast spray window; slower spraying is reported over the whole capture


def _credential_failures(steps: list[Step]) -> list[Step]:
    """Failed authentications of an account: refused credentials, or KDC pre-auth/revoked errors."""
    out = []
    for s in steps:
        if s.result != "failure":
            continue
        if s.credential and s.auth in ("ntlm", "kerberos", "soap", "password", "passive", "digest"):
            out.append(s)
        elif s.step == "kerberos" and s.facts.get("error_code") in (18, 24):
            out.append(s)
    return out


def _account_of(step: Step, sessions_by_id: dict[str, Session]) -> str | None:
    acc = step.evidence_of("account")
    if acc:
        return acc[0]
    if step.session and step.session in sessions_by_id:
        return sessions_by_id[step.session].user
    return None


def build(sessions: list[Session], steps: list[Step], auth: list[AuthExchange], thresholds: Thresholds | None = None) -> list[Finding]:
    t = thresholds or Thresholds()
    findings: list[Finding] = []
    by_id = {s.id: s for s in sessions}

    # external-domain-credentials ------------------------------------------------------------
    ext = [
        s
        for s in sessions
        if s.location == "external"
        and any(st.credential and st.auth in DOMAIN_CREDENTIALS and st.step != "kerberos" for st in s.steps)
    ]
    if ext:
        protos = sorted({st.auth for s in ext for st in s.steps if st.credential and st.auth in DOMAIN_CREDENTIALS})
        findings.append(
            Finding(
                id="external-domain-credentials",
                severity="high",
                title="Domain credentials are used from outside the network",
                detail=(
                    f"{len(ext)} external sign-in(s) sent domain credentials ({', '.join(p for p in protos if p)}) "
                    "that the Front End checks against Active Directory. Anyone on the Internet who knows a user "
                    "name can lock that account out, and mobile clients may store the domain password."
                ),
                sessions=tuple(s.id for s in ext),
                evidence=tuple(_session_line(s) for s in ext[:20]),
                advice=PASSIVE_ADVICE,
            )
        )

    # external-without-mfa ------------------------------------------------------------------
    no_mfa = [
        s
        for s in sessions
        if s.location == "external"
        and s.outcome == "success"
        and not any(st.step == "adfs" and (st.facts.get("mfa") or st.facts.get("mfa_prompt")) for st in s.steps)
    ]
    if no_mfa:
        findings.append(
            Finding(
                id="external-without-mfa",
                severity="high",
                title="External sign-ins succeed without a second factor",
                detail=(
                    f"{len(no_mfa)} external sign-in(s) succeeded without an AD FS second-factor step; "
                    "two-factor authentication is not enforced for external access."
                ),
                sessions=tuple(s.id for s in no_mfa),
                evidence=tuple(_session_line(s) for s in no_mfa[:20]),
                advice="Require two-factor authentication through AD FS for external access. " + PASSIVE_ADVICE,
            )
        )

    # lockout-risk -----------------------------------------------------------------------------
    fails = _credential_failures(steps)
    per_account: dict[str, list[Step]] = defaultdict(list)
    shown_name: dict[str, str] = {}
    for s in fails:
        acc = _account_of(s, by_id)
        if not acc:
            continue
        key = account_key(acc)
        per_account[key].append(s)
        shown_name.setdefault(key, acc)
    for key, lst in sorted(per_account.items()):
        lst.sort(key=lambda s: s.time)
        best = _densest(lst, t.lockout_window_s)
        if len(best) >= t.lockout_failures:
            sources = sorted({s.client for s in best})
            span = best[-1].time - best[0].time
            findings.append(
                Finding(
                    id="lockout-risk",
                    severity="high" if len(best) >= 2 * t.lockout_failures else "medium",
                    title=f"Account {shown_name[key]} collects repeated failed sign-ins",
                    detail=(
                        f"{len(best)} failed authentications of {shown_name[key]} within {span:.0f} s "
                        f"from {', '.join(sources)}. Repeated failures lock the Active Directory account "
                        "(a denial of service beyond Lync). A device with a stale saved password retries on "
                        "its own, without the user typing anything."
                    ),
                    sessions=tuple(sorted({s.session for s in best if s.session})),
                    evidence=tuple(f"frame {s.frame} {s.step} {s.auth} from {s.client}: {s.failure_reason}" for s in best[:20]),
                    advice=(
                        "Find the device that keeps failing (address and user agent in the evidence) and update "
                        "or remove its saved password. Stop domain credentials reaching the Front End from the "
                        "Internet: " + PASSIVE_ADVICE
                    ),
                )
            )

    # password-spray ---------------------------------------------------------------------------
    per_source: dict[str, list[Step]] = defaultdict(list)
    for s in fails:
        per_source[s.client].append(s)
    for src, lst in sorted(per_source.items()):
        lst.sort(key=lambda s: s.time)
        tries: dict[str, int] = defaultdict(int)
        names: dict[str, str] = {}
        for s in lst:
            acc = _account_of(s, by_id)
            if acc:
                tries[account_key(acc)] += 1
                names.setdefault(account_key(acc), acc)
        light = [k for k, n in tries.items() if n <= t.spray_max_tries]
        if len(light) < t.spray_accounts:
            continue
        span = lst[-1].time - lst[0].time
        slow = span > t.spray_window_s
        findings.append(
            Finding(
                id="password-spray",
                severity="high",
                title=f"Password spraying from {src}" + (" (slow, spread over time)" if slow else ""),
                detail=(
                    f"{src} failed to authenticate as {len(light)} different accounts with at most "
                    f"{t.spray_max_tries} tries each over {span:.0f} s."
                ),
                sessions=tuple(sorted({s.session for s in lst if s.session})),
                evidence=tuple(f"{names[k]}: {tries[k]} failed tries" for k in sorted(light)[:30]),
                advice=(
                    "Block the source at the reverse proxy, check the accounts for later successful sign-ins, and "
                    "remove password-based sign-in from the Internet: " + PASSIVE_ADVICE
                ),
            )
        )

    # ntlm-v1 ----------------------------------------------------------------------------------
    weak = [a for a in auth if a.protocol == "ntlm" and a.message == "authenticate" and a.ntlm_version in ("v1", "ntlm2-session")]
    if weak:
        users = sorted({f"{a.domain}\\{a.user}" if a.domain else str(a.user) for a in weak if a.user})
        findings.append(
            Finding(
                id="ntlm-v1",
                severity="high",
                title="NTLMv1 / NTLM2-session responses on the wire",
                detail=f"{len(weak)} NTLM AUTHENTICATE message(s) use a v1-strength response; they can be cracked offline.",
                sessions=tuple(sorted({s.session for s in steps if s.session and s.frame in {a.frame for a in weak}})),
                evidence=tuple(f"frame {a.frame} {a.transport} {a.domain}\\{a.user} ({a.ntlm_version}) workstation {a.workstation}" for a in weak[:20]),
                advice=(
                    "Set 'Network security: LAN Manager authentication level' to 'Send NTLMv2 response only. "
                    f"Refuse LM & NTLM' on clients and servers. Accounts seen: {', '.join(users) or 'unknown'}."
                ),
            )
        )

    # anonymous-access -------------------------------------------------------------------------
    anon = [s for s in sessions if any(st.auth == "anonymous" and st.result == "success" for st in s.steps)]
    if anon:
        findings.append(
            Finding(
                id="anonymous-access",
                severity="low",
                title="Anonymous (guest) web tickets or tokens are issued",
                detail=f"{len(anon)} guest sign-in(s) obtained a ticket or token without an account.",
                sessions=tuple(s.id for s in anon),
                evidence=tuple(_session_line(s) for s in anon[:20]),
                advice=(
                    "Expected when anonymous meeting join is wanted. Otherwise disable it: "
                    "Set-CsWebServiceConfiguration -AllowAnonymousAccessToLWAConference $false, and restrict "
                    "anonymous participants in the conferencing policy."
                ),
            )
        )

    # kerberos-fallback-ntlm -------------------------------------------------------------------
    fallback = []
    for s in sessions:
        if s.location != "internal":
            continue
        offered_negotiate = any("Negotiate" in (st.facts.get("offered") or []) or "Kerberos" in (st.facts.get("offered") or []) for st in s.steps)
        ntlm_used = [st for st in s.steps if st.auth == "ntlm" and st.credential]
        if offered_negotiate and ntlm_used:
            fallback.append((s, ntlm_used))
    if fallback:
        spn_errors = [st for s, _ in fallback for st in s.steps if st.step == "kerberos" and st.facts.get("error_code") == 7]
        findings.append(
            Finding(
                id="kerberos-fallback-ntlm",
                severity="medium",
                title="Internal clients use NTLM although Kerberos is offered",
                detail=(
                    f"{len(fallback)} internal sign-in(s) answered a Negotiate/Kerberos offer with NTLM."
                    + (f" The KDC reported {len(spn_errors)} unknown SPN(s) ({', '.join(sorted({str(st.url) for st in spn_errors}))})." if spn_errors else "")
                ),
                sessions=tuple(s.id for s, _ in fallback),
                evidence=tuple(f"{s.id} frame {u[0].frame}: {u[0].method} {u[0].url} with NTLM" for s, u in fallback[:20])
                + tuple(f"frame {st.frame}: {st.failure_evidence} for {st.url}" for st in spn_errors[:10]),
                advice=(
                    "Assign a Kerberos account to the site and publish the HTTP SPNs (New-CsKerberosAccount, "
                    "Set-CsKerberosAccountAssignment, Set-CsKerberosAccountPassword), then check with setspn -L."
                ),
            )
        )
    return findings


def _densest(lst: list[Step], window: float) -> list[Step]:
    best: list[Step] = []
    j = 0
    for i in range(len(lst)):
        while lst[i].time - lst[j].time > window:
            j += 1
        if i - j + 1 > len(best):
            best = lst[j : i + 1]
    return best


def _session_line(s: Session) -> str:
    return f"{s.id}: {s.user or 'unknown user'} from {s.client_address} ({s.client_kind}, {s.auth_protocol}, {s.outcome})"
