"""URL rules: which sign-in step a web request is, most specific rule first (mitmproxy-style registry).

Paths are the Lync 2013 web-service paths of PROTOCOL.md §2–§7; hosts `lyncdiscover*` mark
Autodiscover even at `/`.  A rule reports how sure it is; the highest priority that matches wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UrlRule:
    step: str
    kind: str  # a finer label kept in Step.facts["kind"]
    path: re.Pattern[str]
    priority: int
    lync: bool = True  # the request belongs to Lync (or AD FS) sign-in traffic


def _r(step: str, kind: str, pattern: str, priority: int, lync: bool = True) -> UrlRule:
    return UrlRule(step, kind, re.compile(pattern, re.IGNORECASE), priority, lync)


RULES: tuple[UrlRule, ...] = tuple(
    sorted(
        (
            _r("mex", "webticket-mex", r"^/webticket/webticketservice\.svc/mex(?:[/?]|$)", 100),
            _r("certprov", "certprov-mex", r"^/certprov/certprovisioningservice\.svc/mex(?:[/?]|$)", 100),
            _r("webticket", "webticket", r"^/webticket/webticketservice\.svc(?:/[^?]*)?(?:\?|$)", 90),
            _r("oauth", "oauthtoken", r"^/webticket/oauthtoken(?:[/?]|$)", 90),
            # Office 365's security token service (login.microsoftonline.com, PROTOCOL.md §5.8)
            _r("webticket", "o365-rst2", r"^/rst2\.srf(?:[?]|$)", 90),
            _r("other", "o365-realm", r"^/getuserrealm\.srf(?:[?]|$)", 40),
            _r("certprov", "certprov", r"^/certprov/certprovisioningservice\.svc", 90),
            _r("autodiscover", "oauth-user", r"^/autodiscover/autodiscoverservice\.svc/root/oauth/user", 85),
            _r("autodiscover", "user", r"^/autodiscover/autodiscoverservice\.svc/root/user", 85),
            _r("autodiscover", "domain", r"^/autodiscover/autodiscoverservice\.svc/root/domain", 85),
            _r("autodiscover", "root", r"^/autodiscover/autodiscoverservice\.svc/root(?:[/?]|$)", 80),
            _r("autodiscover", "root", r"^/autodiscover/autodiscoverservice\.svc(?:[/?]|$)", 70),
            _r("autodiscover", "xframe", r"^/autodiscover/xframe/", 70),
            _r("adfs", "lync-passiveauth", r"^/passiveauth(?:[/?.]|$)", 80),
            _r("adfs", "adfs-ls", r"^/adfs/ls(?:[/?]|$)", 80),
            _r("adfs", "adfs", r"^/adfs/(?:oauth2|services/trust|federationmetadata|portal)", 70),
            _r("ucwa", "applications", r"^/ucwa/(?:oauth/|anonymous/)?v1/applications/?(?:\?|$)", 80),
            _r("ucwa", "resource", r"^/ucwa/", 60),
            _r("other", "lwa-meet", r"^/meet/", 40),
            _r("other", "lwa", r"^/lwa/", 40),
            _r("other", "authbroker", r"^/reach/", 40),
            _r("other", "mcx", r"^/mcx/", 40),
            _r("other", "abs", r"^/abs/", 40),
            _r("other", "groupexpansion", r"^/groupexpansion/", 40),
            _r("other", "scheduler", r"^/scheduler", 40),
            _r("other", "dialin", r"^/dialin", 40),
            _r("other", "lync-web", r"^/(?:rgsclients|locationinformation|persistentchat|hybridconfig|"
               r"datacollabweb|collabcontent|conferencing|webticket|cscp|etc/place)", 30),
        ),
        key=lambda r: -r.priority,
    )
)

DISCOVER_HOST = re.compile(r"^lyncdiscover(internal)?\.", re.IGNORECASE)


def match(host: str | None, path: str) -> UrlRule | None:
    """The best rule for a request, or None for traffic that is not Lync's."""
    p = path or "/"
    for rule in RULES:
        if rule.path.search(p):
            return rule
    name = host.split(":")[0] if host else ""
    if name and DISCOVER_HOST.match(name):
        return ROOT_ON_DISCOVER_HOST
    if name:
        for rx, rule in SIMPLE_URL_HOSTS:
            if rx.match(name) and rule.path.search(p):
                return rule
    return None


ROOT_ON_DISCOVER_HOST = UrlRule("autodiscover", "root", re.compile(r".*"), 75)
#: Simple URLs on their own hosts (PROTOCOL.md §8.3): `https://meet.<domain>/<user>/<ConfID>` is
#: the meeting join page, `https://dialin.<domain>/` the dial-in page.
SIMPLE_URL_HOSTS = (
    (re.compile(r"^meet\.", re.IGNORECASE), UrlRule("other", "lwa-meet", re.compile(r"^/[^/?#]+/[^/?#]+"), 40)),
    (re.compile(r"^dialin\.", re.IGNORECASE), UrlRule("other", "dialin", re.compile(r".*"), 40)),
)
