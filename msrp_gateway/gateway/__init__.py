"""The gateway: joins a page-mode peer (SIP MESSAGE) to a session-mode peer (MSRP).

OpenSIPS' msrp_gateway re-built: `msg_to_msrp` and `msrp_gw_answer` are the two functions a
routing script calls; the session table, its sweep and the UA notifications live here.
Time comes from the injected reactor; the UA and the SIP stack are injected too, so the
whole package runs on `task.Clock` against the fakes of `msrp_gateway.testing`.

The request view `req` the script functions take needs only: `method`, `ruri`, `from_uri`,
`to_uri` (str), `body` (bytes), `content_type` (str | None), `responded` (bool),
`reply(code, reason=None, *, headers=())`, `transaction` (the ServerTransaction) and a
writable `owned` flag (set when the transaction is handed to the UA, which answers it).

One job per module: `sessions.py` (the session table, life cycle, sweep, MI management,
how sessions end), `page_to_session.py` (`msg_to_msrp`: MESSAGE bodies out as SENDs),
`session_to_page.py` (`msrp_gw_answer`: SENDs out as MESSAGEs), `replies.py` (return codes
and answers), `delivery.py` (`[msrp_gateway] delivery = "end_to_end"`: MESSAGE answers that
wait for the MSRP outcome, SEND REPORTs that wait for the MESSAGE's; the status tables).
`Gateway` joins the two directions; every name is importable from here.
"""

from __future__ import annotations

from msrp_gateway.registry import (  # noqa: F401 - re-exported, as before the split
    DuplicateKey,
    EndSessionFailed,
    GatewayError,
    GatewaySession,
    GatewaySettings,
    Origin,
    QueuedBody,
    Registry,
    RegistryError,
    RegistryFull,
    SessionNotFound,
    State,
    check_key,
    parse_content_types,
    strip_uri,
    type_accepted,
    valid_uri,
)

from .delivery import (  # noqa: F401 - re-exported
    END_TO_END,
    HOP,
    PendingAnswer,
    msrp_failure_status,
    setup_failure_status,
)
from .page_to_session import PageToSession
from .replies import (  # noqa: F401 - RETRY_AFTER re-exported
    ERR_DUPLICATE,
    ERR_LIMIT,
    ERR_PARAMS,
    ERR_UA,
    OK,
    PENDING,
    RETRY_AFTER,
    SETUP_FAILED_EVENT,
)
from .session_to_page import SessionToPage
from .sessions import Clock, DelayedCall  # noqa: F401 - re-exported

__all__ = [
    "SETUP_FAILED_EVENT",
    "OK",
    "PENDING",
    "ERR_PARAMS",
    "ERR_DUPLICATE",
    "ERR_LIMIT",
    "ERR_UA",
    "GatewaySettings",
    "Gateway",
    "GatewayError",
    "SessionNotFound",
    "EndSessionFailed",
    "DuplicateKey",
    "RegistryFull",
    "parse_content_types",
    "type_accepted",
]


class Gateway(PageToSession, SessionToPage):
    """The session table and the two script functions; see the package docstring.

    `Gateway(reactor, ua, sip_stack, settings=None, emit_event=None)`, as docs/internals.md
    says; its methods come from `sessions.GatewayBase` and the two directions."""
