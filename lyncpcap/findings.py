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


@dataclass(slots=True)
class _Failure:
    """A failed authentication of an account (refused credentials, KDC pre-auth/revoked errors)."""

    time: float
    client: str
    account: str | None
    session: str | None
    frame: int
    step: str
    auth: str | None
    reason: str | None


@dataclass(slots=True)
class _SessionFacts:
    """What the findings need of a session, kept instead of the session itself."""

    id: str
    number: int
    line: str
    location: str
    outcome: str
    auth_protocol: str
    domain_credentials: tuple[str, ...]  # domain credential protocols it sent (not the KDC's)
    second_factor: bool
    anonymous_issued: bool
    ntlm_after_kerberos_offer: tuple[int, str | None, str | None] | None  # (frame, method, url)
    unknown_spns: tuple[tuple[int, str | None, str | None], ...]  # (frame, evidence, SPN)


@dataclass(slots=True)
class _WeakNtlm:
    frame: int
    transport: str
    domain: str | None
    user: str | None
    version: str | None
    workstation: str | None
    session: str | None


def _is_failed_authentication(s: Step) -> bool:
    if s.result != "failure" or s.facts.get("credentials_unchecked") or s.facts.get("password_accepted"):
        # e.g. 28029: no password was checked; Office 365 asking for MFA: the password was right
        return False
    if s.credential and s.auth in ("ntlm", "kerberos", "soap", "password", "passive", "digest"):
        return True
    return s.step == "kerberos" and s.facts.get("error_code") in (18, 24)


class FindingsAccumulator:
    """Collects, session by session (and for steps no session claimed), the few facts the findings
    need; `findings()` then judges them.  The same whichever order sessions close in."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.t = thresholds or Thresholds()
        self._sessions: list[_SessionFacts] = []
        self._failures: list[_Failure] = []
        self._weak: list[_WeakNtlm] = []
        self._accepted: list[tuple[str, str]] = []  # (client, account) whose password a server accepted before MFA
        self._foreign_srv: list[tuple[int, str | None, str, tuple[str, ...], str]] = []  # frame, session, name, targets, domain
        # server → method family → where it was first seen advertised
        self._methods: dict[str, dict[str, str]] = defaultdict(dict)

    # -- feeding -----------------------------------------------------------------------------------
    def add_session(self, session: Session) -> None:
        for st in session.steps:
            self._step(st, session.user)
        offered_kerberos = any(  # schemes as the server wrote them: their names are case-insensitive
            scheme.lower() in ("negotiate", "kerberos") for st in session.steps for scheme in st.facts.get("offered") or ()
        )
        ntlm = next((st for st in session.steps if st.auth == "ntlm" and st.credential), None)
        self._sessions.append(
            _SessionFacts(
                id=session.id,
                number=int(session.id[1:]) if session.id[1:].isdigit() else 0,
                line=_session_line(session),
                location=session.location,
                outcome=session.outcome,
                auth_protocol=session.auth_protocol,
                domain_credentials=tuple(
                    sorted(
                        {
                            st.auth
                            for st in session.steps
                            if st.credential and st.auth in DOMAIN_CREDENTIALS and st.step != "kerberos"
                        }
                    )
                ),
                second_factor=any(
                    st.step == "adfs" and (st.facts.get("mfa") or st.facts.get("mfa_prompt") or st.facts.get("client_certificate"))
                    for st in session.steps
                ),
                anonymous_issued=any(st.auth == "anonymous" and st.result == "success" for st in session.steps),
                ntlm_after_kerberos_offer=(ntlm.frame, ntlm.method, ntlm.url) if (offered_kerberos and ntlm) else None,
                unknown_spns=tuple(
                    (st.frame, st.failure_evidence, st.url)
                    for st in session.steps
                    if st.step == "kerberos" and st.facts.get("error_code") == 7
                ),
            )
        )

    def add_step(self, step: Step) -> None:
        """A step that belongs to no session."""
        self._step(step, None)

    def add_exchange(self, a: AuthExchange, session: str | None) -> None:
        if a.protocol == "ntlm" and a.message == "authenticate" and a.ntlm_version in ("v1", "ntlm2-session"):
            self._weak.append(_WeakNtlm(a.frame, a.transport, a.domain, a.user, a.ntlm_version, a.workstation, session))

    def _step(self, s: Step, session_user: str | None) -> None:
        for a in s.exchanges:
            self.add_exchange(a, s.session)
        if _is_failed_authentication(s):
            accounts = s.evidence_of("account")
            self._failures.append(
                _Failure(
                    s.time, s.client, accounts[0] if accounts else session_user, s.session, s.frame, s.step, s.auth,
                    s.failure_reason,
                )
            )
        if s.facts.get("password_accepted"):
            accounts = s.evidence_of("account")
            self._accepted.append((s.client, accounts[0] if accounts else session_user or "an unnamed account"))
        if s.facts.get("srv_foreign_targets"):
            self._foreign_srv.append((s.frame, s.session, str(s.url), tuple(s.facts["srv_foreign_targets"]), str(s.facts.get("sip_domain"))))
        mex_methods = s.facts.get("mex_methods")
        offered = s.facts.get("offered")
        grants = s.facts.get("oauth_grants")
        if not (mex_methods or offered or grants):
            return
        server = str(s.facts.get("server_fqdn") or (s.facts.get("host") or "").split(":")[0] or s.dst).lower()
        seen = self._methods[server]
        for m in mex_methods or []:
            fam = MEX_FAMILIES.get(m)
            if fam:
                seen.setdefault(fam, f"MEX port ({m}), frame {s.frame}")
        for scheme in offered or []:
            low = scheme.lower()
            fam = SIP_FAMILIES.get(low) if s.step == "sip-register" else HTTP_FAMILIES.get(low)
            if fam:
                where = "SIP 401" if s.step == "sip-register" else "HTTP 401"
                seen.setdefault(fam, f"{where} offers {scheme}, frame {s.frame}")
        for g in grants or []:
            fam = GRANT_FAMILIES.get(g)
            if fam:
                seen.setdefault(fam, f"MsRtcOAuth grant_type {g}, frame {s.frame}")

    # -- judging -----------------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        sessions = sorted(self._sessions, key=lambda f: f.number)
        failures = sorted(self._failures, key=lambda f: (f.time, f.frame))
        findings: list[Finding] = []

        ext = [s for s in sessions if s.location == "external" and s.domain_credentials]
        if ext:
            protos = sorted({p for s in ext for p in s.domain_credentials})
            findings.append(
                Finding(
                    id="external-domain-credentials",
                    severity="high",
                    title="Domain credentials are used from outside the network",
                    detail=(
                        f"{len(ext)} external sign-in(s) sent domain credentials ({', '.join(protos)}) "
                        "that the Front End checks against Active Directory. Anyone on the Internet who knows a user "
                        "name can lock that account out, and mobile clients may store the domain password."
                    ),
                    sessions=tuple(s.id for s in ext),
                    evidence=tuple(s.line for s in ext[:20]),
                    advice=PASSIVE_ADVICE,
                )
            )

        no_mfa = [
            s
            for s in sessions
            if s.location == "external" and s.outcome == "success" and s.auth_protocol != "anonymous" and not s.second_factor
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
                    evidence=tuple(s.line for s in no_mfa[:20]),
                    advice="Require two-factor authentication through AD FS for external access. " + PASSIVE_ADVICE,
                )
            )

        findings.extend(self._lockouts(failures))
        findings.extend(self._sprays(failures))

        if self._weak:
            weak = sorted(self._weak, key=lambda w: w.frame)
            users = sorted({f"{a.domain}\\{a.user}" if a.domain else str(a.user) for a in weak if a.user})
            findings.append(
                Finding(
                    id="ntlm-v1",
                    severity="high",
                    title="NTLMv1 / NTLM2-session responses on the wire",
                    detail=f"{len(weak)} NTLM AUTHENTICATE message(s) use a v1-strength response; they can be cracked offline.",
                    sessions=tuple(sorted({a.session for a in weak if a.session}, key=_id_order)),
                    evidence=tuple(
                        f"frame {a.frame} {a.transport} {a.domain}\\{a.user} ({a.version}) workstation {a.workstation}"
                        for a in weak[:20]
                    ),
                    advice=(
                        "Set 'Network security: LAN Manager authentication level' to 'Send NTLMv2 response only. "
                        f"Refuse LM & NTLM' on clients and servers. Accounts seen: {', '.join(users) or 'unknown'}."
                    ),
                )
            )

        anon = [s for s in sessions if s.anonymous_issued]
        if anon:
            findings.append(
                Finding(
                    id="anonymous-access",
                    severity="low",
                    title="Anonymous (guest) web tickets or tokens are issued",
                    detail=f"{len(anon)} guest sign-in(s) obtained a ticket or token without an account.",
                    sessions=tuple(s.id for s in anon),
                    evidence=tuple(s.line for s in anon[:20]),
                    advice=(
                        "Expected when anonymous meeting join is wanted. Otherwise disable it: "
                        "Set-CsWebServiceConfiguration -AllowAnonymousAccessToLWAConference $false, and restrict "
                        "anonymous participants in the conferencing policy."
                    ),
                )
            )

        findings.extend(self._configuration(sessions))

        if self._foreign_srv:
            names = sorted({(name, targets, domain) for _, _, name, targets, domain in self._foreign_srv})
            findings.append(
                Finding(
                    id="srv-target-outside-sip-domain",
                    severity="medium",
                    title="DNS SRV records for sign-in point outside the SIP domain",
                    detail=(
                        "Clients that find their registrar through these SRV records do not trust a host outside the "
                        "sign-in address's domain (they ask the user, or fail): "
                        + "; ".join(f"{name} → {', '.join(targets)} (not in {domain})" for name, targets, domain in names)
                        + "."
                    ),
                    sessions=tuple(sorted({sid for _, sid, _, _, _ in self._foreign_srv if sid}, key=_id_order)),
                    evidence=tuple(f"{name} answered {', '.join(targets)}, frame {frame}" for frame, _, name, targets, _ in self._foreign_srv[:20]),
                    advice=(
                        "Point _sipinternaltls._tcp and _sip._tls at a name in the SIP domain (e.g. sip.<domain>) that the "
                        "pool's or Edge's certificate carries, or list the server in the clients' TrustModelData policy "
                        "(PROTOCOL.md §1.1)."
                    ),
                )
            )

        fallback = [s for s in sessions if s.location == "internal" and s.ntlm_after_kerberos_offer]
        if fallback:
            spn_errors = [e for s in fallback for e in s.unknown_spns]
            spns = ", ".join(sorted({str(url) for _, _, url in spn_errors}))
            findings.append(
                Finding(
                    id="kerberos-fallback-ntlm",
                    severity="medium",
                    title="Internal clients use NTLM although Kerberos is offered",
                    detail=(
                        f"{len(fallback)} internal sign-in(s) answered a Negotiate/Kerberos offer with NTLM."
                        + (f" The KDC reported {len(spn_errors)} unknown SPN(s) ({spns})." if spn_errors else "")
                    ),
                    sessions=tuple(s.id for s in fallback),
                    evidence=tuple(
                        f"{s.id} frame {u[0]}: {u[1]} {u[2]} with NTLM"
                        for s in fallback[:20]
                        if (u := s.ntlm_after_kerberos_offer)
                    )
                    + tuple(f"frame {frame}: {evidence} for {url}" for frame, evidence, url in spn_errors[:10]),
                    advice=(
                        "Assign a Kerberos account to the site and publish the HTTP SPNs (New-CsKerberosAccount, "
                        "Set-CsKerberosAccountAssignment, Set-CsKerberosAccountPassword), then check with setspn -L."
                    ),
                )
            )
        order = {sev: i for i, sev in enumerate(SEVERITIES)}
        return sorted(findings, key=lambda f: order[f.severity])  # stable within a severity

    def _lockouts(self, failures: list[_Failure]) -> list[Finding]:
        t = self.t
        out: list[Finding] = []
        per_account: dict[str, list[_Failure]] = defaultdict(list)
        shown_name: dict[str, str] = {}
        for f in failures:
            if not f.account:
                continue
            key = account_key(f.account)
            per_account[key].append(f)
            shown_name.setdefault(key, f.account)
        for key, lst in sorted(per_account.items()):
            best = _densest(lst, t.lockout_window_s)
            if len(best) < t.lockout_failures:
                continue
            sources = sorted({f.client for f in best})
            span = best[-1].time - best[0].time
            pattern = _retry_pattern(best)
            automatic = (
                f" The failures look automatic ({pattern}): a device keeps trying a saved password the user is no "
                "longer typing."
                if pattern
                else ""
            )
            out.append(
                Finding(
                    id="lockout-risk",
                    severity="high" if len(best) >= 2 * t.lockout_failures else "medium",
                    title=f"Account {shown_name[key]} collects repeated failed sign-ins",
                    detail=(
                        f"{len(best)} failed authentications of {shown_name[key]} within {span:.0f} s "
                        f"from {', '.join(sources)}. Repeated failures lock the Active Directory account "
                        "(a denial of service beyond Lync)." + automatic
                    ),
                    sessions=tuple(sorted({f.session for f in best if f.session}, key=_id_order)),
                    evidence=tuple(f"frame {f.frame} {f.step} {f.auth} from {f.client}: {f.reason}" for f in best[:20]),
                    advice=(
                        "Find the device that keeps failing (address and user agent in the evidence) and update "
                        "or remove its saved password. Stop domain credentials reaching the Front End from the "
                        "Internet: " + PASSIVE_ADVICE
                    ),
                )
            )
        return out

    def _sprays(self, failures: list[_Failure]) -> list[Finding]:
        t = self.t
        out: list[Finding] = []
        per_source: dict[str, list[_Failure]] = defaultdict(list)
        for f in failures:
            per_source[f.client].append(f)
        for src, lst in sorted(per_source.items()):
            tries: dict[str, int] = defaultdict(int)
            names: dict[str, str] = {}
            for f in lst:
                if f.account:
                    tries[account_key(f.account)] += 1
                    names.setdefault(account_key(f.account), f.account)
            light = [k for k, n in tries.items() if n <= t.spray_max_tries]
            if len(light) < t.spray_accounts:
                continue
            span = lst[-1].time - lst[0].time
            slow = span > t.spray_window_s
            hits = sorted({a for client, a in self._accepted if client == src})
            found = (
                f" The password of {len(hits)} account(s) was right (the server asked only for the second factor): "
                + ", ".join(hits) + "."
                if hits else ""
            )
            out.append(
                Finding(
                    id="password-spray",
                    severity="high",
                    title=f"Password spraying from {src}" + (" (slow, spread over time)" if slow else ""),
                    detail=(
                        f"{src} failed to authenticate as {len(light)} different accounts with at most "
                        f"{t.spray_max_tries} tries each over {span:.0f} s." + found
                    ),
                    sessions=tuple(sorted({f.session for f in lst if f.session}, key=_id_order)),
                    evidence=tuple(f"{names[k]}: {tries[k]} failed tries" for k in sorted(light)[:30]),
                    advice=(
                        "Block the source at the reverse proxy, check the accounts for later successful sign-ins, and "
                        "remove password-based sign-in from the Internet: " + PASSIVE_ADVICE
                    ),
                )
            )
        return out

    def _configuration(self, sessions: list[_SessionFacts]) -> list[Finding]:
        found: list[Finding] = []
        methods = {k: v for k, v in self._methods.items() if v}
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
                evidence=tuple(f"{server} {fam}: {where}" for server, fams in sorted(methods.items()) for fam, where in sorted(fams.items())),
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
                        evidence=tuple(f"{server} {fam}: {methods[server][fam]}" for server, fam in open_),
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


def _id_order(sid: str) -> tuple[int, str]:
    return (int(sid[1:]), sid) if sid[1:].isdigit() else (0, sid)


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


def _retry_pattern(lst: list[_Failure]) -> str | None:
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


def _densest(lst: list[_Failure], window: float) -> list[_Failure]:
    best: list[_Failure] = []
    j = 0
    for i in range(len(lst)):
        while lst[i].time - lst[j].time > window:
            j += 1
        if i - j + 1 > len(best):
            best = lst[j : i + 1]
    return best


def _session_line(s: Session) -> str:
    return f"{s.id}: {s.user or 'unknown user'} from {s.client_address} ({s.client_kind}, {s.auth_protocol}, {s.outcome})"
