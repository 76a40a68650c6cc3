"""AD FS passive sign-in (WS-Federation) and the Lync `/PassiveAuth` relying party.

Recognises `wa=wsignin1.0` requests, forms sign-in (`UserName`/`Password`/`AuthMethod`, or AD FS 2.0's
`…$UsernameTextBox`/`…$PasswordTextBox`), second-factor
pages and posts, the auto-submitted `wresult` token, `errorText` failures and the `FedAuth` cookie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lyncpcap.protocols.http import parse_query
from lyncpcap.secrets import Secret

PRIMARY_METHODS = frozenset(
    {"formsauthentication", "windowsauthentication", "certificateauthentication", "deviceauthentication"}
)
# AD FS 2012 R2 and later: `errorText`; AD FS 2.0's FormsSignIn.aspx: `ctl00_ContentPlaceHolder1_ErrorTextLabel`
_ERROR_TEXT = re.compile(
    rb"""<[^>]*id\s*=\s*["'](?:errorText|\w*ErrorTextLabel)["'][^>]*>(.*?)</""", re.IGNORECASE | re.DOTALL
)
#: Form fields by the last part of their name (AD FS 2.0 names them `ctl00$ContentPlaceHolder1$UsernameTextBox`).
_USER_FIELDS = ("username", "usernametextbox")
_PASSWORD_FIELDS = ("password", "passwordtextbox")


def _field(form: dict[str, str], names: tuple[str, ...]) -> str | None:
    for key, value in form.items():
        if key.rsplit("$", 1)[-1].lower() in names and value:
            return value
    return None
_TAGS = re.compile(r"<[^>]+>")
_MFA_MARKERS = (
    b"additionalauthentication",
    b"verification code",
    b"verificationcode",
    b"one-time",
    b"onetimepasscode",
    b"otp",
    b"second factor",
    b"multi-factor",
)


@dataclass(frozen=True, slots=True)
class WsFedRequest:
    wa: str | None
    wtrealm: str | None
    wctx_present: bool
    wreply: str | None
    wresult: Secret | None  # the posted token response (SAML): secret
    username: str | None  # forms sign-in user
    password: Secret | None
    auth_method: str | None
    second_factor: bool  # a post of an additional (second-factor) authentication method
    otp: Secret | None


@dataclass(frozen=True, slots=True)
class AdfsPage:
    login_form: bool  # a sign-in page with a password field
    error_text: str | None  # the errorText element's text (failed sign-in)
    mfa_page: bool  # a second-factor page
    token_post_form: bool  # the auto-submitting form that carries wresult back to the RP
    error_page: bool  # AD FS "An error occurred" page


def parse_request(query: str, body: bytes) -> WsFedRequest:
    q = parse_query(query)
    f = parse_query(body.decode("utf-8", "replace")) if body else {}
    merged = {**q, **f}
    method = merged.get("AuthMethod")
    otp_field = next((k for k in f if k.lower() in ("otp", "verificationcode", "challengequestionanswer", "pin")), None)
    second = bool(method and method.lower() not in PRIMARY_METHODS) or otp_field is not None
    wresult = merged.get("wresult")
    pw = _field(f, _PASSWORD_FIELDS)
    return WsFedRequest(
        wa=merged.get("wa"),
        wtrealm=merged.get("wtrealm"),
        wctx_present="wctx" in merged,
        wreply=merged.get("wreply"),
        wresult=Secret("saml", wresult) if wresult else None,
        username=_field(f, _USER_FIELDS),
        password=Secret("password", pw) if pw else None,
        auth_method=method,
        second_factor=second,
        otp=Secret("password", f[otp_field]) if otp_field and f.get(otp_field) else None,
    )


def parse_page(body: bytes) -> AdfsPage:
    low = body.lower()
    err = None
    m = _ERROR_TEXT.search(body)
    if m:
        text = _TAGS.sub("", m.group(1).decode("utf-8", "replace")).strip()
        err = " ".join(text.split()) or None
    login = b'type="password"' in low or b"type='password'" in low or b"name=\"password\"" in low
    token_form = b'name="wresult"' in low or b"name='wresult'" in low
    mfa = any(mk in low for mk in _MFA_MARKERS) and not token_form
    error_page = b"an error occurred" in low and not login
    return AdfsPage(login_form=login, error_text=err, mfa_page=mfa, token_post_form=token_form, error_page=error_page)
