"""MSRP sessions and transactions (RFC 4975 s.7), independent of sockets.

A `LinkCore` is one MSRP connection seen without Twisted: it is fed bytes, writes bytes
through a callable, and keeps the transactions in flight on that connection. A
`SessionTable` matches incoming requests to `MSRPSession`s (To-Path, From-Path, binding).
Timers run on an injected `Clock`, so tests drive everything with `task.Clock`.
`transport.py` only wires these to TCP/TLS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from ..stats import MSRPStats
from .chunks import (
    BUDGET_EXHAUSTED,
    path_head,
    AssembledMessage,
    Reassembler,
    ReassemblyBudget,
    ReassemblyError,
)
from .link import LinkCore
from .outgoing import OutgoingMessage
from .message import MSRPParseError, MSRPRequest
from .rules import (
    CHUNK_SIZE,
    CONNECTION_LOST,
    NOT_CONNECTED,
    QUEUE_FULL,
    REASONS,
    RESPONSE_TIMEOUT,
    Clock,
    MSRPSendError,
    SessionError,
    SessionSettings,
    Timer,
    build_report,
    build_response,
    content_type_accepted,
    media_type,
    new_id,
    wants_failure_report,
    wants_response,
)
from .uri import parse_msrp_uri, uris_match

__all__ = [
    "CHUNK_SIZE", "CONNECTION_LOST", "Clock", "IncomingMessage", "LinkCore", "MSRPSendError",
    "MSRPSession", "NOT_CONNECTED", "OutgoingMessage", "QUEUE_FULL", "REASONS",
    "RESPONSE_TIMEOUT", "SessionError", "SessionHost", "SessionSettings", "SessionTable",
    "Timer", "build_report", "build_response", "content_type_accepted", "media_type",
    "new_id", "wants_failure_report", "wants_response",
]

log = Logger()


def _uri_session_id(uri: str) -> str | None:
    try:
        return parse_msrp_uri(uri).session_id
    except MSRPParseError:
        return None


# ---- received messages ----------------------------------------------------------------

@dataclass(slots=True, weakref_slot=True)
class IncomingMessage:
    """A whole (reassembled) message handed to `session.on_message`.

    It holds no timer and the session keeps no reference to it: a message its owner never
    reports on (the MESSAGE it became failed, the owner dropped it) goes with its last
    reference and leaves nothing behind.
    """

    message_id: str
    content_type: str | None
    body: bytes
    failure_report: str
    success_report: str
    _session: MSRPSession | None = field(default=None, repr=False)
    _report_path: list[str] = field(default_factory=list, repr=False)
    # The session left the success REPORT to us (SessionSettings.owner_success_reports).
    _owner_reports: bool = field(default=False, repr=False)
    # A REPORT with the message's outcome went out: no success REPORT after it.
    _reported: bool = field(default=False, repr=False)

    def report_failure(self, code: int, comment: str | None = None) -> bool:
        """Send a failure REPORT if the sender asked for one; True if one was sent."""
        if self._session is None or not wants_failure_report(self.failure_report):
            return False
        n = len(self.body)
        sent = self._session.send_report(self.message_id, f"1-{n}/{n}", code, comment,
                                         self._report_path)
        self._reported = self._reported or sent
        return sent

    def report_success(self, comment: str | None = None) -> bool:
        """Send the success REPORT the sender asked for (Success-Report: yes) now that the
        owner knows the message was delivered; True if one was sent.

        Only when the session left it to its owner (`owner_success_reports`), at most once
        and never after a failure REPORT; one REPORT covers the whole byte range of a
        chunked message (RFC 4975 s.7.1.2). False when the session is gone.
        """
        if (self._session is None or not self._owner_reports or self._reported
                or self.success_report != "yes"):
            return False
        n = len(self.body)
        sent = self._session.send_report(self.message_id, f"1-{n}/{n}", 200, comment,
                                         self._report_path)
        self._reported = sent
        return sent


# ---- sessions ---------------------------------------------------------------------------

class MSRPSession:
    """One MSRP session: our path, the peer's path, the connection it is bound to."""

    def __init__(self, stack: SessionHost, session_id: str, local_uri: str,
                 accept_types: Sequence[str], settings: SessionSettings,
                 relay_path: Sequence[str] = ()) -> None:
        self.stack = stack
        self.session_id = session_id
        self.local_uri = local_uri
        self.local_path: list[str] = [*relay_path, local_uri]
        self.accept_types = list(accept_types)
        self.settings = settings
        self.remote_path: list[str] = []
        self.link: LinkCore | None = None
        self.closed = False
        self.on_message: Callable[[IncomingMessage], None] | None = None
        self.on_report: Callable[[MSRPRequest], None] | None = None
        self.on_closed: Callable[[str], None] | None = None
        self._bound_waiters: list[defer.Deferred[None]] = []
        self._reassembler = Reassembler(
            max_message_size=settings.max_message_size,
            max_open=settings.max_reassemblies, timeout=settings.reassembly_timeout,
            budget=stack.reassembly_budget)
        self._expiry: Timer | None = None
        # The To-Path/From-Path lines of what we send, built once per remote path.
        self._head: bytes | None = None
        self._head_for: list[str] | None = None
        self._stats = stack.msrp_stats

    # -- set-up -------------------------------------------------------------------
    @property
    def send_path(self) -> list[str]:
        """The To-Path of what we send: our relays (RFC 4976 Use-Path), then the peer's path."""
        return [*self.local_path[:-1], *self.remote_path]

    def set_remote_path(self, path: Sequence[str]) -> None:
        for uri in path:
            parse_msrp_uri(uri)  # raises MSRPParseError for a bad path
        self.remote_path = list(path)

    def connect(self) -> defer.Deferred[None]:
        """Active side: open or reuse the connection, send the binding SEND, fire on 200."""
        if not self.remote_path:
            return defer.fail(MSRPSendError(NOT_CONNECTED, "no remote path set"))
        d = self.stack.link_for(self.send_path[0])

        def linked(link: LinkCore) -> defer.Deferred[int]:
            if self.closed:
                raise MSRPSendError(NOT_CONNECTED, "session closed")
            self.bind(link)
            return self.send(None, b"")

        return d.addCallback(linked).addCallback(lambda _: None)

    def wait_bound(self, timeout: float) -> defer.Deferred[None]:
        """Passive side: fires when the peer's first request binds the session."""
        if self.link is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._bound_waiters.append(d)
        clock = self.stack.clock

        def expire() -> None:
            if d in self._bound_waiters:
                self._bound_waiters.remove(d)
                d.errback(MSRPSendError(408, "peer did not connect in time"))

        call = clock.callLater(timeout, expire)
        d.addBoth(_cancel_then(call))
        return d

    def bind(self, link: LinkCore) -> None:
        self.link = link
        link.attach(self)
        waiters, self._bound_waiters = self._bound_waiters, []
        for d in waiters:
            d.callback(None)

    # -- sending --------------------------------------------------------------------
    def send(self, content_type: str | None, body: bytes, *, failure_report: str = "yes",
             success_report: str = "no") -> defer.Deferred[int]:
        """Final status of the whole message; errback `MSRPSendError`.

        With Failure-Report `no` it fires 200 once written; with `partial` it fires 200 when
        no negative response came within the response timeout.
        """
        fr = failure_report.strip().lower()
        sr = success_report.strip().lower()
        if fr not in ("yes", "no", "partial") or sr not in ("yes", "no"):
            return defer.fail(ValueError("failure_report yes|no|partial, success_report yes|no"))
        if body and not content_type:
            return defer.fail(ValueError("a non-empty MSRP body needs a content type"))
        if self.closed or self.link is None:
            return defer.fail(MSRPSendError(NOT_CONNECTED, "session is not connected"))
        link = self.link
        head = self._head
        if head is None or self._head_for is not self.remote_path:
            try:
                head = self._head = path_head(self.send_path, self.local_uri)
            except ValueError as e:
                return defer.fail(MSRPSendError(400, f"cannot send on this path: {e}"))
            self._head_for = self.remote_path
        msg = OutgoingMessage(self, content_type, body, fr, sr, self.settings.chunk_size,
                              new_tid=link.new_tid, path_head=head)
        try:
            link.enqueue(msg)
        except SessionError as e:
            return defer.fail(MSRPSendError(e.code, e.comment))
        self._stats.sends_sent += 1
        return msg.deferred

    def send_report(self, message_id: str, byte_range: str, status: int,
                    comment: str | None = None, to_path: Sequence[str] = ()) -> bool:
        """Write a REPORT to `to_path` (the SEND's From-Path; default the peer's path)."""
        path = list(to_path) or self.send_path
        if self.closed or self.link is None or not path:
            return False
        self.link.write_frame(build_report(self.local_uri, path, message_id, byte_range,
                                           status, comment))
        stats = self._stats
        stats.reports_sent += 1
        if status != 200:
            stats.failure_reports_sent += 1
        return True

    # -- receiving ------------------------------------------------------------------
    def receive_send(self, req: MSRPRequest) -> int:
        """Handle a SEND matched to us; return the status to answer (raise SessionError)."""
        self._stats.sends_received += 1
        ctype = req.content_type
        if ctype is not None or req.body and req.byte_range.start == 1:
            if not content_type_accepted(ctype, self.accept_types):
                raise SessionError(415)
        try:
            result = self._reassembler.receive(req, self.stack.clock.seconds())
        except ReassemblyError as e:
            budget = self.stack.reassembly_budget
            if budget is not None and e.reason == BUDGET_EXHAUSTED and \
                    budget.may_log(self.stack.clock.seconds()):
                log.warn("MSRP session {sid}: chunk of {mid} refused 413: {used} of "
                         "{limit} bytes (max_reassembly_bytes) held in incomplete "
                         "messages; {n} chunk(s) refused so far", sid=self.session_id,
                         mid=e.message_id, used=budget.used, limit=budget.limit,
                         n=budget.refused)
            raise SessionError(e.code, e.reason) from None
        if result is None:
            self._arm_expiry()
            return 200
        if not self._reassembler.open_count and self._expiry is not None:
            if self._expiry.active():
                self._expiry.cancel()
            self._expiry = None
        if isinstance(result, AssembledMessage):
            if result.body or result.content_type is not None:
                self._deliver(result)
            # else an empty SEND: binding or keep-alive, not a message
        else:
            log.info("MSRP session {sid}: message {mid} aborted by the peer",
                     sid=self.session_id, mid=result.message_id)
        return 200

    def _deliver(self, whole: AssembledMessage) -> None:
        path = whole.request.from_path
        owner_reports = self.settings.owner_success_reports
        msg = IncomingMessage(whole.message_id, whole.content_type, whole.body,
                              whole.failure_report, whole.success_report, self, path,
                              owner_reports)
        if whole.success_report == "yes" and not owner_reports:
            n = len(whole.body)
            self.send_report(whole.message_id, f"1-{n}/{n}", 200, None, path)
        if self.on_message is not None:
            self._notify("on_message", self.on_message, msg)
        else:
            log.warn("MSRP session {sid}: message {mid} dropped, no handler",
                     sid=self.session_id, mid=whole.message_id)

    def _arm_expiry(self) -> None:
        if self._expiry is None and self._reassembler.open_count:
            self._expiry = self.stack.clock.callLater(self.settings.reassembly_timeout,
                                                      self._expire)

    def _expire(self) -> None:
        """Incomplete messages idle too long are dropped and reported, never kept."""
        self._expiry = None
        for gone in self._reassembler.expire(self.stack.clock.seconds()):
            log.warn("MSRP session {sid}: message {mid} incomplete ({got} bytes) after "
                     "{t}s, dropped", sid=self.session_id, mid=gone.message_id,
                     got=gone.received, t=self.settings.reassembly_timeout)
            if wants_failure_report(gone.failure_report):
                total = "*" if gone.total is None else str(gone.total)
                self.send_report(gone.message_id, f"1-{gone.received}/{total}", 408,
                                 "incomplete message timed out", gone.request.from_path)
        if self._reassembler.open_count:
            self._expiry = self.stack.clock.callLater(
                max(self.settings.reassembly_timeout / 4, 0.001), self._expire)

    def receive_report(self, req: MSRPRequest) -> None:
        self._notify("on_report", self.on_report, req)

    def _notify(self, name: str, callback: Callable[[Any], None] | None, arg: object) -> None:
        """Call the owner's callback; its failure is logged, never the connection's problem."""
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.failure("{name} of MSRP session {sid} failed", name=name, sid=self.session_id)

    # -- ending -----------------------------------------------------------------------
    def close(self) -> None:
        """End the session locally: pending SENDs fail, the connection may go idle."""
        if self.closed:
            return
        self.closed = True
        self._clear_partials()
        self.stack.forget(self)
        if self.link is not None:
            self.link.detach(self, "session closed")
            self.link = None

    def link_lost(self, reason: str) -> None:
        """The connection went away: report it once to the owner."""
        if self.closed:
            return
        self.closed = True
        self.link = None
        self._clear_partials()
        self.stack.forget(self)
        self._notify("on_closed", self.on_closed, reason)

    def _clear_partials(self) -> None:
        self._reassembler.discard_all()
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        waiters, self._bound_waiters = self._bound_waiters, []
        for d in waiters:
            d.errback(MSRPSendError(CONNECTION_LOST, "session closed"))


def _cancel_then(call: Timer) -> Callable[[object], object]:
    def cancel(result: object) -> object:
        if call.active():
            call.cancel()
        return result
    return cancel


class SessionHost:
    """What a session needs from its stack: a clock, a link to a next hop, forgetting it;
    optionally the stack-wide reassembly budget all its sessions share."""

    clock: Clock
    reassembly_budget: ReassemblyBudget | None = None

    @property
    def msrp_stats(self) -> MSRPStats:
        """The counters every session of this host bumps (``msrp:`` statistics), made on
        first use so that any host (the stack, a test's) has its own."""
        stats: MSRPStats | None = self.__dict__.get("_msrp_stats")
        if stats is None:
            stats = self.__dict__["_msrp_stats"] = MSRPStats()
        return stats

    def link_for(self, uri: str) -> defer.Deferred[LinkCore]:  # pragma: no cover - interface
        raise NotImplementedError

    def forget(self, session: MSRPSession) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# ---- matching ----------------------------------------------------------------------------

class SessionTable:
    """Sessions by session-id; RFC 4975 s.7.3 matching of a request to one of them."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._by_id: dict[str, MSRPSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, session: MSRPSession) -> None:
        if len(self._by_id) >= self.settings.max_sessions:
            raise SessionError(503, f"session table full ({self.settings.max_sessions})")
        self._by_id[session.session_id] = session

    def remove(self, session: MSRPSession) -> None:
        if self._by_id.get(session.session_id) is session:
            del self._by_id[session.session_id]

    def get(self, session_id: str) -> MSRPSession | None:
        return self._by_id.get(session_id)

    def match(self, req: MSRPRequest, link: LinkCore,
              to_path: Sequence[str] | None = None,
              from_path: Sequence[str] | None = None) -> MSRPSession:
        """The session a request is for, or SessionError(400 | 481 | 506).

        `to_path`/`from_path`: the request's paths when the caller already read them."""
        if to_path is None:
            to_path = req.to_path
        if from_path is None:
            from_path = req.from_path
        if not to_path or not from_path:
            raise SessionError(400, "To-Path and From-Path are required")
        sid = _uri_session_id(to_path[0])
        session = self._by_id.get(sid) if sid else None
        if session is None:
            raise SessionError(481)
        exact = not self.settings.session_id_matching
        if exact and not _same_uri(to_path[0], session.local_uri):
            raise SessionError(481)
        if session.remote_path and not _same_uri(from_path[-1], session.remote_path[-1],
                                                 exact):
            raise SessionError(481, "From-Path does not match the session")
        if session.link is not None and session.link is not link:
            raise SessionError(506)
        return session


def _same_uri(a: str, b: str, exact: bool = True) -> bool:
    try:
        if exact:
            return uris_match(a, b)
        return parse_msrp_uri(a).session_id == parse_msrp_uri(b).session_id
    except MSRPParseError:
        return False

