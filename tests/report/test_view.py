"""Shared presentation rules: safe URLs, labels, colours, the per-client rows and ladder lanes."""

from __future__ import annotations

import pytest
from reportkit import analysis_of

from lyncpcap.model import AUTH_PROTOCOLS, STEPS, Step
from lyncpcap.report import view
from lyncpcap.secrets import Secret


def step(**kw: object) -> Step:
    fields: dict[str, object] = {
        "step": "webticket", "time": 10.0, "end": 10.25, "frame": 7, "src": "10.0.0.9", "dst": "10.0.0.21",
        "method": "POST", "url": "https://lyncweb.contoso.com/WebTicket/WebTicketService.svc", "status": 401,
        "auth": "ntlm", "detail": "",
    }
    fields.update(kw)
    return Step(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/p", "https://h/p"),
        ("http://lyncdiscover.contoso.com/?sipuri=carol@contoso.com", "http://lyncdiscover.contoso.com/?sipuri=carol@contoso.com"),
        ("https://adfs/ls/?wa=wsignin1.0&wtrealm=https%3A%2F%2Fpool%2F", "https://adfs/ls/?wa=wsignin1.0&wtrealm=https%3A%2F%2Fpool%2F"),
        ("https://h/a?password=Secret1&wa=wsignin1.0",
         f"https://h/a?password={Secret('query', 'Secret1').redacted()}&wa=wsignin1.0"),
        ("https://h/lwa?xml=PGNvbmY%2BZm9v", f"https://h/lwa?xml={Secret('query', 'PGNvbmY+Zm9v').redacted()}"),
        (None, None),
    ],
)
def test_safe_url_redacts_unknown_query_values(url: str | None, expected: str | None) -> None:
    assert view.safe_url(url) == expected


def test_safe_url_reveals_and_is_idempotent() -> None:
    url = "https://h/a?token=abc123"
    assert view.safe_url(url, reveal=True) == url
    once = view.safe_url(url)
    assert once is not None and "abc123" not in once
    assert view.safe_url(once) == once


def test_every_step_and_protocol_has_a_colour_and_a_label() -> None:
    assert set(view.STEP_COLOURS) == set(STEPS)
    assert set(view.PROTOCOL_LABELS) == set(AUTH_PROTOCOLS)


@pytest.mark.parametrize("width", [20, 30, 45, 60])
def test_arrow_label_fits_and_keeps_the_status(width: int) -> None:
    label = view.arrow_label(step(url="https://lyncweb.contoso.com/Autodiscover/AutodiscoverService.svc/root/oauth/user"),
                             width)
    assert len(label) <= width
    assert label.startswith("POST /") and label.endswith("→ 401")


def test_truncate_path_keeps_the_telling_end() -> None:
    assert view.truncate_path("/WebTicket/WebTicketService.svc/mex", 30) == "/…/WebTicketService.svc/mex"
    assert view.truncate_path("/short", 30) == "/short"


def test_durations_and_offsets() -> None:
    assert view.ms(0.0594) == "59 ms"
    assert view.ms(90.6) == "90.6 s"
    assert view.offset(0.0) == "+0.000 s"
    assert view.offset(1.2345) == "+1.234 s" or view.offset(1.2345) == "+1.235 s"


def test_client_rows_have_the_seed_table_shape() -> None:
    rows = view.client_rows(analysis_of("02-desktop-external-ntlm.pcapng"))
    assert [(r.client, r.protocols, r.sessions, r.succeeded, r.failed) for r in rows] == [
        ("Lync 2013 desktop (external network)", "NTLM", 1, 1, 0)
    ]
    rows = view.client_rows(analysis_of("06-lwa-guests-anonymous.pcap"))
    assert [(r.client, r.protocols) for r in rows] == [("Lync Web App (external network)", "SOAP (Anonymous)")]


def test_lanes_behind_a_reverse_proxy_and_an_edge() -> None:
    session = analysis_of("02-desktop-external-ntlm.pcapng").session_list[0]
    lanes, messages = view.sequence(session)
    assert [lane.role for lane in lanes] == ["Client", "Reverse proxy", "Edge", "Front end / Registrar"]
    assert lanes[0].key == session.client_address
    relayed = [m for m in messages if m.via is not None]
    assert relayed and all(m.via == session.client_address for m in relayed)
    assert len(messages) == len(session.steps)


def test_lanes_for_dns_kdc_and_adfs() -> None:
    locked = analysis_of("09b-locked-account.pcapng").session_list[1]
    assert "DNS resolver / KDC" in [lane.role for lane in view.sequence(locked)[0]]
    passive = analysis_of("07-passive-adfs-2fa.pcap").session_list[0]
    roles = [lane.role for lane in view.sequence(passive)[0]]
    assert roles[0] == "Client" and "AD FS" in roles and roles.index("Front end / Registrar") < roles.index("AD FS")


def test_step_states_single_out_the_fatal_step() -> None:
    session = analysis_of("09b-locked-account.pcapng").session_list[1]
    states = view.step_states(session)
    assert states.count("fatal") == 1
    fatal = session.steps[states.index("fatal")]
    assert session.failure is not None and fatal.step == session.failure["step"]
    assert "refused" in states  # the Kerberos error before the NTLM fallback
    ok = analysis_of("11-background-noise.pcapng").session_list[0]
    assert "fatal" not in view.step_states(ok)
