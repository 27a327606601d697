"""The pure rules MSRP sessions and connections share (RFC 4975 s.7), with no I/O.

Status codes and reasons, the two error types, the layer's settings, Failure-Report and
accept-types rules, the responses and REPORTs we build, and the clock protocol the
Twisted-free cores run on (any `IReactorTime`, e.g. `task.Clock`, fits it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from .message import MSRPHeaders, MSRPRequest, MSRPResponse

__all__ = [
    "CHUNK_SIZE",
    "CONNECTION_LOST",
    "Clock",
    "MSRPCounters",
    "MSRPSendError",
    "NOT_CONNECTED",
    "QUEUE_FULL",
    "REASONS",
    "RESPONSE_TIMEOUT",
    "SessionError",
    "SessionSettings",
    "Timer",
    "build_report",
    "build_response",
    "content_type_accepted",
    "media_type",
    "new_id",
    "wants_failure_report",
    "wants_response",
]


class Timer(Protocol):
    """A pending call (`IDelayedCall`): what the cores do with the timers they start."""

    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The part of `IReactorTime` the cores use; typed here so mypy needs no zope plugin."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> Timer: ...


# RFC 4975 s.7.1.1: a SEND "times out" when no response came in 30 seconds.
RESPONSE_TIMEOUT = 30.0
# RFC 4975 s.7.1.1: chunks of at most 2048 octets keep other messages flowing.
CHUNK_SIZE = 2048

REASONS = {
    200: "OK", 400: "Bad Request", 403: "Forbidden", 408: "Request Timeout",
    413: "Message Too Large", 415: "Unsupported Media Type", 423: "Out of Bounds",
    481: "Session Does Not Exist", 501: "Not Implemented", 506: "Session Already In Use",
}
# Local errors reported to the caller of send(); never put on the wire.
CONNECTION_LOST = 503
NOT_CONNECTED = 503
QUEUE_FULL = 503


class MSRPSendError(Exception):
    """A SEND did not succeed: the peer's status, 408 on timeout, 503 for local trouble."""

    def __init__(self, code: int, comment: str | None = None) -> None:
        super().__init__(code, comment)
        self.code = code
        self.comment = comment

    def __str__(self) -> str:
        return f"MSRP send failed: {self.code} {self.comment or ''}".rstrip()


class SessionError(Exception):
    """A request cannot be served; `code` is the MSRP status to answer with."""

    def __init__(self, code: int, comment: str | None = None) -> None:
        super().__init__(code, comment)
        self.code = code
        self.comment = comment or REASONS.get(code)


@dataclass(slots=True)
class SessionSettings:
    """Bounds and timers of the MSRP layer; every one configurable, all with safe defaults."""

    response_timeout: float = RESPONSE_TIMEOUT
    chunk_size: int = CHUNK_SIZE
    max_message_size: int = 16 * 1024 * 1024
    max_reassemblies: int = 16          # incomplete incoming messages per session
    reassembly_timeout: float = 120.0   # an incomplete message is dropped and reported after this
    idle_timeout: float = 30.0          # a connection with no session closes after this
    frame_timeout: float = 60.0         # one frame must arrive whole within this
    # Per connection, so shared by every session to one next hop ([msrp] max_send_queue,
    # max_send_queue_bytes, max_in_flight in the config). A send past the queue bounds
    # fails at once (503 naming the setting).
    max_queued_messages: int = 1024     # outgoing messages with chunks still to write
    max_queued_bytes: int = 64 * 1024 * 1024  # their bodies together
    max_inflight: int = 256             # SEND transactions awaiting their response
    max_unsent_bytes: int = 4 * 1024 * 1024  # responses/REPORTs piled up for a peer that
                                             # does not read: beyond this, close
    max_sessions: int = 100_000
    max_connections: int = 10_000       # open connections; an inbound one beyond is refused
    max_reassembly_bytes: int = 256 * 1024 * 1024  # held in open reassemblies by all
                                                   # sessions together: beyond, 413
    session_id_matching: bool = False   # RFC 6714 (CEMA): match on session-id only
    # Success-Report: yes is answered by the session's owner (`IncomingMessage.
    # report_success()`) once the message is really delivered, not by the session on
    # receipt: the gateway's `delivery = "end_to_end"` reports the SIP MESSAGE's 2xx.
    owner_success_reports: bool = False


@dataclass(slots=True)
class MSRPCounters:
    """What a stack counts about trouble it could not answer, for operators and tests.

    (Chunks refused for the stack-wide reassembly budget are counted by the budget.)
    """

    unanswerable: int = 0  # broken requests with no usable path to answer them on
    _last_log: dict[str, float] = field(default_factory=dict, repr=False)

    def may_log(self, what: str, now: float, every: float = 60.0) -> bool:
        """At most one warning about `what` per `every` seconds: hostile input must not
        flood the log (the counters still count every case)."""
        if now - self._last_log.get(what, float("-inf")) < every:
            return False
        self._last_log[what] = now
        return True


# ---- small pure rules ---------------------------------------------------------------

def wants_response(failure_report: str | None, status: int) -> bool:
    """RFC 4975 s.7.1.2: yes/absent -> every response, partial -> negative only, no -> none."""
    fr = (failure_report or "yes").strip().lower()
    if fr == "no":
        return False
    if fr == "partial":
        return status >= 300
    return True


def wants_failure_report(failure_report: str | None) -> bool:
    return (failure_report or "yes").strip().lower() in ("yes", "partial")


def media_type(value: str | None) -> str | None:
    """`Text/Plain; charset=utf-8` -> `text/plain`; None for a missing or empty value."""
    if value is None:
        return None
    mt = value.split(";", 1)[0].strip().lower()
    return mt or None


def content_type_accepted(content_type: str | None, accept_types: Sequence[str]) -> bool:
    """RFC 4975 s.8.6 accept-types: case-insensitive, `*` and `type/*` wildcards."""
    mt = media_type(content_type)
    if mt is None or "/" not in mt:
        return False
    major = mt.split("/", 1)[0]
    for accepted in accept_types:
        a = accepted.strip().lower()
        if a == "*" or a == mt or (a.endswith("/*") and a[:-2] == major):
            return True
    return False


def new_id(nbytes: int = 10) -> str:
    """Unguessable identifier usable as transaction id, Message-ID and session id."""
    return secrets.token_hex(nbytes)


# ---- frames we build ------------------------------------------------------------------

def build_response(req: MSRPRequest, status: int, comment: str | None = None) -> MSRPResponse:
    """RFC 4975 s.7.2: a response names only the previous hop and us."""
    headers = MSRPHeaders()
    if req.from_path:
        headers.add("To-Path", req.from_path[0])
    if req.to_path:
        headers.add("From-Path", req.to_path[0])
    return MSRPResponse(req.transaction_id, status, comment or REASONS.get(status), headers)


def build_report(local_uri: str, to_path: Sequence[str], message_id: str, byte_range: str,
                 status: int, comment: str | None = None) -> MSRPRequest:
    """RFC 4975 s.7.1.2: a REPORT about a message; REPORTs are never answered."""
    headers = MSRPHeaders([
        ("To-Path", " ".join(to_path)),
        ("From-Path", local_uri),
        ("Message-ID", message_id),
        ("Byte-Range", byte_range),
        ("Status", f"000 {status} {comment or REASONS.get(status, '')}".rstrip()),
    ])
    return MSRPRequest(new_id(), "REPORT", headers)

