"""Security findings: how safely Lync is exposed, and attacks on it (seed: "Increase Lync 2013 security").

Two requirements come back in almost every project: domain credentials may not be used from outside,
and two-factor authentication is mandatory for external access.  Each finding carries its evidence
(sessions, frames, accounts, addresses) and advice.  Thresholds are parameters with stated defaults.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from lyncpcap.model import DOMAIN_CREDENTIALS, SEVERITIES, AuthExchange, Finding, Session, Step
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
        if (s.credential and s.auth in ("ntlm", "kerberos", "soap", "password", "passive", "digest")) or (s.step == "kerberos" and s.facts.get("error_code") in (18, 24)):
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
        and s.auth_protocol != "anonymous"
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
            pattern = _retry_pattern(best)
            automatic = (
                f" The failures look automatic ({pattern}): a device keeps trying a saved password the user is no "
                "longer typing."
                if pattern
                else ""
            )
            findings.append(
                Finding(
                    id="lockout-risk",
                    severity="high" if len(best) >= 2 * t.lockout_failures else "medium",
                    title=f"Account {shown_name[key]} collects repeated failed sign-ins",
                    detail=(
                        f"{len(best)} failed authentications of {shown_name[key]} within {span:.0f} s "
                        f"from {', '.join(sources)}. Repeated failures lock the Active Directory account "
                        "(a denial of service beyond Lync)." + automatic
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

    findings.extend(_config_findings(steps, sessions))

    # kerberos-fallback-ntlm -------------------------------------------------------------------
    fallback: list[tuple[Session, list[Step]]] = []
    for sess in sessions:
        if sess.location != "internal":
            continue
        offered_negotiate = any(
            "Negotiate" in (st.facts.get("offered") or []) or "Kerberos" in (st.facts.get("offered") or []) for st in sess.steps
        )
        ntlm_used = [st for st in sess.steps if st.auth == "ntlm" and st.credential]
        if offered_negotiate and ntlm_used:
            fallback.append((sess, ntlm_used))
    if fallback:
        spn_errors = [st for sess, _ in fallback for st in sess.steps if st.step == "kerberos" and st.facts.get("error_code") == 7]
        findings.append(
            Finding(
                id="kerberos-fallback-ntlm",
                severity="medium",
                title="Internal clients use NTLM although Kerberos is offered",
                detail=(
                    f"{len(fallback)} internal sign-in(s) answered a Negotiate/Kerberos offer with NTLM."
                    + (f" The KDC reported {len(spn_errors)} unknown SPN(s) ({', '.join(sorted({str(st.url) for st in spn_errors}))})." if spn_errors else "")
                ),
                sessions=tuple(sess.id for sess, _ in fallback),
                evidence=tuple(f"{sess.id} frame {u[0].frame}: {u[0].method} {u[0].url} with NTLM" for sess, u in fallback[:20])
                + tuple(f"frame {st.frame}: {st.failure_evidence} for {st.url}" for st in spn_errors[:10]),
                advice=(
                    "Assign a Kerberos account to the site and publish the HTTP SPNs (New-CsKerberosAccount, "
                    "Set-CsKerberosAccountAssignment, Set-CsKerberosAccountPassword), then check with setspn -L."
                ),
            )
        )
    order = {sev: i for i, sev in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])  # stable: same-severity findings keep their order


# ----------------------------------------------------------------------------------------------
# what the servers advertise
# ----------------------------------------------------------------------------------------------

#: advertised mechanism → the method family it enables
MEX_FAMILIES = {
    "windows": "windows",
    "ntlm": "windows",
    "password": "password",
    "certificate": "certificate",
    "anonymous": "anonymous",
    "pin": "pin",
    "passive": "passive",
    "wsfed-bearer": "passive",
    "oauth": "oauth",
}
HTTP_FAMILIES = {"negotiate": "windows", "ntlm": "windows", "basic": "password"}
GRANT_FAMILIES = {
    "password": "password",
    "urn:microsoft.rtc:windows": "windows",
    "urn:microsoft.rtc:anonmeeting": "anonymous",
    "urn:microsoft.rtc:passive": "passive",
}
SIP_FAMILIES = {"ntlm": "windows", "kerberos": "windows", "tls-dsk": "certificate", "digest": "password"}
#: methods that let domain credentials in without AD FS (what passive authentication is meant to replace)
BYPASS = ("windows", "password", "pin")


def server_methods(steps: list[Step]) -> dict[str, dict[str, list[str]]]:
    """Per server: method family → where it was seen advertised (MEX ports, 401 challenges, grants)."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for s in steps:
        server = str(s.facts.get("server_fqdn") or (s.facts.get("host") or "").split(":")[0] or s.dst).lower()
        for m in s.facts.get("mex_methods") or []:
            fam = MEX_FAMILIES.get(m)
            if fam:
                out[server][fam].append(f"MEX port ({m}), frame {s.frame}")
        for scheme in s.facts.get("offered") or []:
            low = scheme.lower()
            fam = SIP_FAMILIES.get(low) if s.step == "sip-register" else HTTP_FAMILIES.get(low)
            if fam:
                where = "SIP 401" if s.step == "sip-register" else "HTTP 401"
                out[server][fam].append(f"{where} offers {scheme}, frame {s.frame}")
        for g in s.facts.get("oauth_grants") or []:
            fam = GRANT_FAMILIES.get(g)
            if fam:
                out[server][fam].append(f"MsRtcOAuth grant_type {g}, frame {s.frame}")
    return {k: dict(v) for k, v in out.items() if v}


def _config_findings(steps: list[Step], sessions: list[Session]) -> list[Finding]:
    found: list[Finding] = []
    methods = server_methods(steps)
    if not methods:
        return found
    lines = [f"{server}: {', '.join(sorted(fams))}" for server, fams in sorted(methods.items())]
    found.append(
        Finding(
            id="server-auth-methods",
            severity="info",
            title="Authentication methods the servers advertise",
            detail="From WebTicket MEX ports, HTTP and SIP 401 challenges and MsRtcOAuth grant types: " + "; ".join(lines) + ".",
            sessions=(),
            evidence=tuple(f"{server} {fam}: {where[0]}" for server, fams in sorted(methods.items()) for fam, where in sorted(fams.items())),
            advice=(
                "Compare with the intended configuration (Get-CsWebServiceConfiguration: UseWindowsAuth, "
                "UseCertificateAuth, UsePinAuth, UseWsFedPassiveAuth, AllowAnonymousAccessToLWAConference; "
                "Get-CsProxyConfiguration for SIP)."
            ),
        )
    )
    all_fams = {fam for fams in methods.values() for fam in fams}
    if "passive" in all_fams:
        open_ = sorted({(server, fam) for server, fams in methods.items() for fam in fams if fam in BYPASS})
        if open_:
            found.append(
                Finding(
                    id="passive-with-other-methods",
                    severity="high",
                    title="Passive (AD FS) authentication is configured but other methods are still open",
                    detail=(
                        "Two-factor authentication through AD FS only protects sign-in when nothing else is accepted; "
                        "these servers still offer: " + ", ".join(f"{fam} on {server}" for server, fam in open_) + "."
                    ),
                    sessions=tuple(s.id for s in sessions if s.auth_protocol in ("ntlm", "kerberos", "soap", "password")),
                    evidence=tuple(f"{server} {fam}: {methods[server][fam][0]}" for server, fam in open_),
                    advice=(
                        "On the pool's web service configuration set -UseWindowsAuth None -UseCertificateAuth $false "
                        "-UsePinAuth $false (certificate auth is still needed for the client to get a web ticket "
                        "only where the documentation says so), and disable Kerberos and NTLM for SIP on the Edge "
                        "and Registrar: New-CsProxyConfiguration -UseKerberosForClientToProxyAuth $false "
                        "-UseNtlmForClientToProxyAuth $false."
                    ),
                )
            )
    return found


def _retry_pattern(lst: list[Step]) -> str | None:
    """'every ~N s' when one source retries at a steady pace (a device, not a person typing)."""
    by_src: dict[str, list[float]] = defaultdict(list)
    for s in lst:
        by_src[s.client].append(s.time)
    for src, times in by_src.items():
        if len(times) < 3:
            continue
        gaps = [b - a for a, b in itertools.pairwise(times)]
        mean = sum(gaps) / len(gaps)
        if mean > 0 and max(gaps) - min(gaps) <= 0.25 * mean:
            return f"{src} retries every ~{mean:.0f} s"
    return None


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
