"""A session as a Mermaid `sequenceDiagram`, for tickets and chat tools that render Mermaid.

Participants are the lanes of the ladder diagram (`view.sequence`).  Text from the capture is
encoded so Mermaid's own syntax never sees it: `#`, `;` and `%` start comments or end statements
in Mermaid, so they (and `<`, `>`) become entity codes such as `#59;`.
"""

from __future__ import annotations

from lyncpcap.model import Session
from lyncpcap.report import view

_ENTITIES = {"#": "#35;", ";": "#59;", "%": "#37;", "<": "#60;", ">": "#62;"}


def text(value: str) -> str:
    """Capture text made safe for a Mermaid message, note, alias or title (one line)."""
    value = " ".join(value.split())
    return "".join(_ENTITIES.get(ch, ch) for ch in value)


def sequence_diagram(session: Session, reveal: bool = False) -> str:
    """The Mermaid source of one session: a request and an answer arrow per step."""
    lanes, messages = view.sequence(session)
    ids = {lane.key: f"P{i}" for i, lane in enumerate(lanes, 1)}
    title = (
        f"{session.id} {view.user_text(session)} · {view.client_label(session.client_kind, session.location)} · "
        f"{view.protocol_label(session.auth_protocol)} · {session.outcome}"
    )
    out = ["sequenceDiagram", f"    title {text(title)}"]
    for lane in lanes:
        parts = [text(lane.role)] + ([text(lane.name)] if lane.name else []) + [text(lane.key)]
        out.append(f"    participant {ids[lane.key]} as {'<br/>'.join(parts)}")
    relayed = dict.fromkeys(m.src for m in messages if m.via is not None)  # ordered, unique
    for key in relayed:
        role = next(lane.role for lane in lanes if lane.key == key)
        out.append(
            f"    Note over {ids[session.client_address]},{ids[key]}: "
            f"{text(f'requests from the client relayed by the {role.lower()} (seen behind it)')}"
        )
    states = view.step_states(session)
    for m, state in zip(messages, states, strict=True):
        st = m.step
        src, dst = ids[m.src], ids[m.dst]
        request = f"{view.offset(m.offset_s)} {st.method or ''} {view.url_path(view.safe_url(st.url, reveal))}"
        out.append(f"    {src}->>{dst}: {text(request)}")
        answer = f"{view.status_text(st)} ({view.ms(st.duration)})"
        if state == "ok":
            out.append(f"    {dst}-->>{src}: {text(answer)}")
            continue
        reason = st.failure_reason
        if state == "fatal" and not reason and session.failure:
            reason = session.failure.get("reason")
        mark = "✖" if state == "fatal" else "!"
        out.append(f"    {dst}--x{src}: {text(f'{answer} {mark} {reason or st.detail}'.strip())}")
        if state == "fatal":
            evidence = st.failure_evidence or (session.failure or {}).get("evidence")
            if evidence:
                out.append(f"    Note over {dst}: {text('evidence: ' + evidence)}")
    return "\n".join(out) + "\n"
