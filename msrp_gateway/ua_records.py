"""The UA's records and contracts: settings, errors, the handler, the per-session state.

Shared by every part of the user agent (`ua_core`, `ua_uac`, `ua_uas`, `ua`); `ua` re-exports
the public names, so ``from msrp_gateway.ua import UAError, UASettings`` keeps working.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from twisted.internet import defer

from .msrp.session import IncomingMessage, Timer
from .sip.uri import parse_name_addr

__all__ = [
    "UAError", "UASettings", "UAHandler", "MSRPSessionAPI", "SessionState", "UASessionInfo",
    "UASession", "split_types", "uri_of", "SETUP_TIMEOUT", "SDP_TYPE", "NO_SESSION",
    "QUEUE_FULL",
]

# RFC 4975 s.7.1.1 gives 30 s for a SEND's response; the binding wait uses the same bound.
SETUP_TIMEOUT = 30.0
SDP_TYPE = "application/sdp"
# A session's own local error codes towards send() callers (never on the wire).
NO_SESSION = 481
QUEUE_FULL = 503


class UAError(Exception):
    """A session cannot be started or answered; ``code``/``reason`` is the SIP reply to use.

    ``headers`` are what that reply should carry (Warning for a 488, Accept for a 415).
    """

    def __init__(self, code: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.headers = tuple(headers)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


@dataclass(slots=True)
class UASettings:
    """What the UA needs from ``[msrp_ua]``; any object with these attributes will do."""

    max_duration: float = 43200.0  # s; 0 = no limit (OpenSIPS msrp_ua max_duration)
    setup_timeout: float = SETUP_TIMEOUT  # ACK + MSRP binding must be done within this
    actpass_answer: str = "passive"  # our a=setup when an offer says actpass
    offer_setup: str = "actpass"  # our a=setup in offers (RFC 6135)
    advertised_contact: str = ""  # Contact URI for our INVITEs, "" = the stack's own
    max_sessions: int = 100_000
    max_queued_messages: int = 256  # per session, while it is being set up


class UAHandler(Protocol):
    """What the UA tells its user (the gateway) about a session."""

    def established(self, session_id: str) -> None: ...
    def failed(self, session_id: str, code: int | None, reason: str | None) -> None: ...
    def terminated(self, session_id: str, why: str) -> None: ...
    def message_received(self, session_id: str, msg: IncomingMessage) -> None: ...
    def report_received(self, session_id: str, report: Any) -> None: ...


class MSRPSessionAPI(Protocol):
    """What the UA uses of an MSRP session (`msrp.session.MSRPSession`; tests pass fakes)."""

    session_id: str
    local_path: list[str]
    on_message: Callable[[IncomingMessage], None] | None
    on_report: Callable[[Any], None] | None
    on_closed: Callable[[str], None] | None

    def set_remote_path(self, path: Sequence[str]) -> None: ...
    def connect(self) -> defer.Deferred[None]: ...
    def wait_bound(self, timeout: float) -> defer.Deferred[None]: ...
    def send(self, content_type: str | None, body: bytes, *, failure_report: str = "yes",
             success_report: str = "no") -> defer.Deferred[int]: ...
    def close(self) -> None: ...


class SessionState(enum.Enum):
    INVITING = "inviting"  # UAC: INVITE sent, no 2xx yet
    SETUP = "setup"  # dialog up; waiting for ACK (UAS) and the MSRP binding
    ESTABLISHED = "established"
    ENDED = "ended"


@dataclass(slots=True)
class UASessionInfo:
    """One line of the MI listing."""

    session_id: str
    role: str  # "uac" (we offered) or "uas" (we answered)
    state: str
    from_uri: str
    to_uri: str
    ruri: str
    call_id: str | None
    local_path: list[str]
    remote_path: list[str]
    created: float
    established: float | None
    queued: int


@dataclass(slots=True, eq=False)
class UASession:
    """One session as the UA tracks it, from the INVITE (or offer) to its one ending."""

    sid: str
    role: str
    handler: Any
    msrp: MSRPSessionAPI
    content_types: list[str]
    from_uri: str
    to_uri: str
    ruri: str
    created: float
    state: SessionState = SessionState.INVITING
    invite: Any = None  # InviteClient while the INVITE is pending
    dialog: Any = None
    acked: bool = False
    bound: bool = False
    remote_path: list[str] = field(default_factory=list)
    established_at: float | None = None
    setup_call: Timer | None = None
    duration_call: Timer | None = None
    queue: deque[tuple[str | None, bytes, str, str, defer.Deferred[int]]] = field(default_factory=deque)
    starting: bool = True  # inside start()/answer(): notifications are deferred
    offer: bytes = b""  # the SDP we offered (UAC, or UAS answering a late offer)
    late_offer: bool = False  # UAS: the INVITE had no SDP; the answer comes in the ACK
    peer_max_size: int | None = None  # the peer's a=max-size (RFC 4975 s.8.6)


def split_types(content_types: str | Sequence[str]) -> list[str]:
    """Content types as a list ("a/b, c/d" or a sequence); none at all is our own error."""
    if isinstance(content_types, str):
        types = content_types.replace(",", " ").split()
    else:
        types = [t.strip() for t in content_types if t.strip()]
    if not types:
        raise UAError(500, "Server Internal Error", [("Warning", '399 msrpgw "no content types configured"')])
    return types


def uri_of(value: str | None) -> str:
    """The URI of a From/To header value (the value itself if it does not parse)."""
    if not value:
        return ""
    try:
        return str(parse_name_addr(value).uri)
    except Exception:
        return value.strip()
