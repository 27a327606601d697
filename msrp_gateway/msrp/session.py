"""MSRP sessions and transactions (RFC 4975 s.7), independent of sockets.

A `LinkCore` is one MSRP connection seen without Twisted: it is fed bytes, writes bytes
through a callable, and keeps the transactions in flight on that connection. A
`SessionTable` matches incoming requests to `MSRPSession`s (To-Path, From-Path, binding).
Timers run on an injected `IReactorTime`, so tests drive everything with `task.Clock`.
`transport.py` only wires these to TCP/TLS.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .chunks import Abandoned, AssembledMessage, Chunker, Reassembler, ReassemblyError
from .message import FrameParser, MSRPParseError, MSRPRequest, MSRPResponse
from .uri import parse_msrp_uri, uris_match

log = Logger()

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
    max_queued_messages: int = 1024     # outgoing messages waiting per connection
    max_queued_bytes: int = 64 * 1024 * 1024
    max_inflight: int = 256             # SENDs awaiting their response per connection
    max_unsent_bytes: int = 4 * 1024 * 1024  # responses/REPORTs piled up for a peer that
                                             # does not read: beyond this, close
    max_sessions: int = 100_000
    max_connections: int = 10_000       # open connections; an inbound one beyond is refused
    session_id_matching: bool = False   # RFC 6714 (CEMA): match on session-id only


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


def _uri_session_id(uri: str) -> str | None:
    try:
        return parse_msrp_uri(uri).session_id
    except MSRPParseError:
        return None


# ---- frames we build ------------------------------------------------------------------

def build_response(req: MSRPRequest, status: int, comment: str | None = None) -> MSRPResponse:
    """RFC 4975 s.7.2: a response names only the previous hop and us."""
    headers: list[tuple[str, str]] = []
    if req.from_path:
        headers.append(("To-Path", req.from_path[0]))
    if req.to_path:
        headers.append(("From-Path", req.to_path[0]))
    return MSRPResponse(req.transaction_id, status, comment or REASONS.get(status), headers)


def build_report(local_uri: str, to_path: Sequence[str], message_id: str, byte_range: str,
                 status: int, comment: str | None = None) -> MSRPRequest:
    """RFC 4975 s.7.1.2: a REPORT about a message; REPORTs are never answered."""
    headers = [
        ("To-Path", " ".join(to_path)),
        ("From-Path", local_uri),
        ("Message-ID", message_id),
        ("Byte-Range", byte_range),
        ("Status", f"000 {status} {comment or REASONS.get(status, '')}".rstrip()),
    ]
    return MSRPRequest(new_id(), "REPORT", headers)


# ---- received messages ----------------------------------------------------------------

@dataclass(slots=True)
class IncomingMessage:
    """A whole (reassembled) message handed to `session.on_message`."""

    message_id: str
    content_type: str | None
    body: bytes
    failure_report: str
    success_report: str
    _session: MSRPSession | None = field(default=None, repr=False)
    _report_path: list[str] = field(default_factory=list, repr=False)

    def report_failure(self, code: int, comment: str | None = None) -> bool:
        """Send a failure REPORT if the sender asked for one; True if one was sent."""
        if self._session is None or not wants_failure_report(self.failure_report):
            return False
        n = len(self.body)
        return self._session.send_report(self.message_id, f"1-{n}/{n}", code, comment,
                                         self._report_path)


# ---- outgoing messages ----------------------------------------------------------------

class OutgoingMessage:
    """One SEND message: its chunks, its transactions in flight and its result."""

    __slots__ = ("session", "message_id", "size", "failure_report", "success_report",
                 "deferred", "outstanding", "_chunker", "written_all", "done")

    def __init__(self, session: MSRPSession, content_type: str | None, body: bytes,
                 failure_report: str, success_report: str, chunk_size: int) -> None:
        self.session = session
        self.message_id = new_id()
        self.size = len(body)
        self.failure_report = failure_report
        self.success_report = success_report
        self.deferred: defer.Deferred[int] = defer.Deferred()
        self.outstanding: dict[str, IDelayedCall | None] = {}
        self.written_all = False
        self.done = False
        self._chunker = Chunker(
            body, message_id=self.message_id, to_path=session.remote_path,
            from_path=session.local_uri, content_type=content_type, chunk_size=chunk_size,
            failure_report=None if failure_report == "yes" else failure_report,
            success_report=None if success_report == "no" else success_report,
            new_transaction_id=new_id)

    def next_frame(self) -> tuple[str, bytes] | None:
        """(transaction id, wire bytes) of the next chunk; None once all are out."""
        req = self._chunker.next_chunk()
        if req is None:
            self.written_all = True
            return None
        return _serialize_fresh(req)

    def abort_frame(self) -> bytes | None:
        """A bodiless `#` chunk telling the peer to drop what it has, if chunks remain."""
        if self.written_all or self._chunker.offset == 0:
            return None
        req = self._chunker.abort()
        if req is None:
            return None
        self.written_all = True
        try:
            return _serialize_fresh(req)[1]
        except ValueError:
            return None

    def fail(self, code: int, comment: str | None) -> None:
        if self.done:
            return
        self.done = True
        for call in self.outstanding.values():
            if call is not None and call.active():
                call.cancel()
        self.outstanding.clear()
        self.deferred.errback(MSRPSendError(code, comment))

    def maybe_succeed(self) -> None:
        if not self.done and self.written_all and not self.outstanding:
            self.done = True
            self.deferred.callback(200)


def _serialize_fresh(req: MSRPRequest) -> tuple[str, bytes]:
    """Serialize, picking another transaction id in the (rare) case the body holds ours.

    Raises ValueError for anything else RFC 4975 s.9 forbids (e.g. a bad content type).
    """
    for _ in range(3):
        try:
            return req.transaction_id, req.to_bytes()
        except ValueError as e:
            if "end-line" not in str(e):
                raise
            req.transaction_id = new_id()
    return req.transaction_id, req.to_bytes()


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
            max_open=settings.max_reassemblies, timeout=settings.reassembly_timeout)
        self._expiry: IDelayedCall | None = None

    # -- set-up -------------------------------------------------------------------
    def set_remote_path(self, path: Sequence[str]) -> None:
        for uri in path:
            parse_msrp_uri(uri)  # raises MSRPParseError for a bad path
        self.remote_path = list(path)

    def connect(self) -> defer.Deferred[None]:
        """Active side: open or reuse the connection, send the binding SEND, fire on 200."""
        if not self.remote_path:
            return defer.fail(MSRPSendError(NOT_CONNECTED, "no remote path set"))
        d = self.stack.link_for(self.remote_path[0])

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
        msg = OutgoingMessage(self, content_type, body, fr, sr, self.settings.chunk_size)
        try:
            self.link.enqueue(msg)
        except SessionError as e:
            return defer.fail(MSRPSendError(e.code, e.comment))
        return msg.deferred

    def send_report(self, message_id: str, byte_range: str, status: int,
                    comment: str | None = None, to_path: Sequence[str] = ()) -> bool:
        """Write a REPORT to `to_path` (the SEND's From-Path; default the peer's path)."""
        path = list(to_path) or self.remote_path
        if self.closed or self.link is None or not path:
            return False
        self.link.write_frame(build_report(self.local_uri, path, message_id, byte_range,
                                           status, comment))
        return True

    # -- receiving ------------------------------------------------------------------
    def receive_send(self, req: MSRPRequest) -> int:
        """Handle a SEND matched to us; return the status to answer (raise SessionError)."""
        if req.body and req.byte_range.start == 1 or req.content_type is not None:
            if not content_type_accepted(req.content_type, self.accept_types):
                raise SessionError(415)
        try:
            result = self._reassembler.receive(req, self.stack.clock.seconds())
        except ReassemblyError as e:
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
        msg = IncomingMessage(whole.message_id, whole.content_type, whole.body,
                              whole.failure_report, whole.success_report, self, path)
        if whole.success_report == "yes":
            n = len(whole.body)
            self.send_report(whole.message_id, f"1-{n}/{n}", 200, None, path)
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:
                log.failure("on_message of MSRP session {sid} failed", sid=self.session_id)
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
        if self.on_report is not None:
            try:
                self.on_report(req)
            except Exception:
                log.failure("on_report of MSRP session {sid} failed", sid=self.session_id)

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
        if self.on_closed is not None:
            try:
                self.on_closed(reason)
            except Exception:
                log.failure("on_closed of MSRP session {sid} failed", sid=self.session_id)

    def _clear_partials(self) -> None:
        self._reassembler.discard_all()
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        waiters, self._bound_waiters = self._bound_waiters, []
        for d in waiters:
            d.errback(MSRPSendError(CONNECTION_LOST, "session closed"))


def _cancel_then(call: IDelayedCall) -> Callable[[object], object]:
    def cancel(result: object) -> object:
        if call.active():
            call.cancel()
        return result
    return cancel


class SessionHost:
    """What a session needs from its stack: a clock, a link to a next hop, forgetting it."""

    clock: IReactorTime

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

    def match(self, req: MSRPRequest, link: LinkCore) -> MSRPSession:
        """The session a request is for, or SessionError(400 | 481 | 506)."""
        to_path = req.to_path
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


# ---- one connection -------------------------------------------------------------------

class LinkCore:
    """An MSRP connection without the socket: framing, transactions, fair chunk sending.

    `write(bytes)` puts bytes on the wire, `lose()` closes it; the adapter calls
    `data_received`, `connection_lost`, `pause`/`resume` (flow control).
    """

    def __init__(self, clock: IReactorTime, table: SessionTable, settings: SessionSettings,
                 parser: FrameParser, write: Callable[[bytes], None],
                 lose: Callable[[], None], on_idle: Callable[[LinkCore], None],
                 name: str = "") -> None:
        self.clock = clock
        self.table = table
        self.settings = settings
        self.parser = parser
        self._write = write
        self._lose = lose
        self._on_idle = on_idle
        self.name = name
        self.sessions: set[MSRPSession] = set()
        self.pending: dict[str, tuple[OutgoingMessage, IDelayedCall | None]] = {}
        self._queue: deque[OutgoingMessage] = deque()
        self._queued_bytes = 0
        self._inflight: set[OutgoingMessage] = set()
        self.paused = False
        self.lost = False
        self.closing = False  # asked to close: not to be reused for new sessions
        self._unsent = 0
        self._idle_call: IDelayedCall | None = None
        self._frame_call: IDelayedCall | None = None
        self._last_hops: tuple[str | None, str | None] = (None, None)
        self._arm_idle()

    # -- sessions -----------------------------------------------------------------------
    def attach(self, session: MSRPSession) -> None:
        self.sessions.add(session)
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def detach(self, session: MSRPSession, why: str) -> None:
        self.sessions.discard(session)
        for msg in [m for m in self._queue if m.session is session]:
            self._queue.remove(msg)
            self._queued_bytes -= msg.size
        for tid, (msg, _) in list(self.pending.items()):
            if msg.session is session:
                del self.pending[tid]
        self._fail_session_messages(session, why)
        if not self.sessions:
            self._arm_idle()

    def _fail_session_messages(self, session: MSRPSession, why: str) -> None:
        # Outstanding messages of a closed session fail once each.
        for msg in list(self._inflight):
            if msg.session is session:
                self._inflight.discard(msg)
                self._fail(msg, CONNECTION_LOST, why)

    def _arm_idle(self) -> None:
        if self.lost or self.sessions:
            return
        if self._idle_call is None or not self._idle_call.active():
            self._idle_call = self.clock.callLater(self.settings.idle_timeout, self._idle)

    def _idle(self) -> None:
        self._idle_call = None
        if not self.sessions and not self.lost:
            self._on_idle(self)
            self._close()

    # -- writing --------------------------------------------------------------------------
    def write_frame(self, frame: MSRPRequest | MSRPResponse) -> None:
        """Responses and REPORTs go out at once; while the socket is full they pile up only
        to `max_unsent_bytes` (a peer that sends but never reads is cut off)."""
        if self.lost or self.closing:
            return
        try:
            data = frame.to_bytes()
        except ValueError as e:  # e.g. a peer's transaction id we may not echo
            log.warn("MSRP connection {name}: cannot write frame: {why}", name=self.name,
                     why=str(e))
            return
        if self.paused:
            self._unsent += len(data)
            if self._unsent > self.settings.max_unsent_bytes:
                log.warn("MSRP connection {name}: peer reads nothing back ({n} bytes "
                         "waiting), closing", name=self.name, n=self._unsent)
                self._close()
                return
        self._write(data)

    def enqueue(self, msg: OutgoingMessage) -> None:
        if self.lost:
            raise SessionError(CONNECTION_LOST, "connection lost")
        if len(self._queue) >= self.settings.max_queued_messages:
            raise SessionError(QUEUE_FULL, f"send queue full "
                               f"({self.settings.max_queued_messages} messages)")
        if self._queued_bytes + msg.size > self.settings.max_queued_bytes:
            raise SessionError(QUEUE_FULL, f"send queue full "
                               f"({self.settings.max_queued_bytes} bytes)")
        self._queue.append(msg)
        self._queued_bytes += msg.size
        self._inflight.add(msg)
        self.pump()

    def pump(self) -> None:
        """Write one chunk per queued message in turn until paused or empty."""
        queue = self._queue
        bound = self.settings.max_inflight
        while queue and not self.paused and not self.lost and len(self.pending) < bound:
            msg = queue.popleft()
            if msg.done:
                self._queued_bytes -= msg.size
                continue
            try:
                frame = msg.next_frame()
            except ValueError as e:
                self._queued_bytes -= msg.size
                self._fail(msg, 400, f"cannot send this message: {e}")
                self._inflight.discard(msg)
                continue
            if frame is None:
                self._queued_bytes -= msg.size
                msg.maybe_succeed()
                if msg.done:
                    self._inflight.discard(msg)
                continue
            queue.append(msg)
            tid, data = frame
            if msg.failure_report != "no":
                call = self.clock.callLater(self.settings.response_timeout,
                                            self._timeout, tid)
                self.pending[tid] = (msg, call)
                msg.outstanding[tid] = call
            self._write(data)

    def _fail(self, msg: OutgoingMessage, code: int, comment: str | None) -> None:
        """Fail a message and forget its other transactions (their timers are cancelled).

        Chunks not yet sent are replaced by a `#` chunk (RFC 4975 s.7.1.1), except after
        a 413, which already told us the peer dropped the message.
        """
        for tid in list(msg.outstanding):
            self.pending.pop(tid, None)
        if code != 413 and not self.lost and not msg.done:
            data = msg.abort_frame()
            if data is not None:
                self._write(data)
        msg.fail(code, comment)

    def _timeout(self, tid: str) -> None:
        entry = self.pending.pop(tid, None)
        if entry is None:
            return
        msg = entry[0]
        msg.outstanding.pop(tid, None)
        if msg.failure_report == "partial":
            msg.maybe_succeed()  # no news is good news: only negatives are sent
        else:
            self._fail(msg, 408, "no response within the transaction timeout")
        if msg.done:
            self._inflight.discard(msg)
        self.pump()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._unsent = 0
        self.pump()

    # -- reading --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data, self.clock.seconds())
        except MSRPParseError as e:
            log.warn("MSRP connection {name}: unrecoverable framing error: {why}",
                     name=self.name, why=e.reason)
            self._close()
            return
        for ev in events:
            if self.lost:
                return
            if isinstance(ev, MSRPResponse):
                self._on_response(ev)
            elif isinstance(ev, MSRPRequest):
                self._on_request(ev)
            else:
                self._on_bad_request(ev)
        if self.parser.pending_since is None:
            if self._frame_call is not None:
                self._frame_call.cancel()
                self._frame_call = None
        elif self._frame_call is None and not self.lost:
            self._frame_call = self.clock.callLater(self.settings.frame_timeout,
                                                    self._frame_check)

    def _frame_check(self) -> None:
        """Bound the time one frame may take to arrive (a peer that never ends a frame)."""
        self._frame_call = None
        since = self.parser.pending_since
        if since is None or self.lost:
            return
        waited = self.clock.seconds() - since
        if waited >= self.settings.frame_timeout:
            log.warn("MSRP connection {name}: frame incomplete after {t}s, closing",
                     name=self.name, t=self.settings.frame_timeout)
            self._close()
            return
        self._frame_call = self.clock.callLater(self.settings.frame_timeout - waited,
                                                self._frame_check)

    def _close(self) -> None:
        self.closing = True
        self._lose()

    def _on_bad_request(self, err: MSRPParseError) -> None:
        """400 (or 413) for a broken request whose id is known; responses are never answered.

        The paths of a broken frame may be unknown: then the hop URIs last seen on this
        connection address the answer (both are single hops, RFC 4975 s.7.2).
        """
        tid = err.transaction_id
        if tid is None or err.response:
            return
        to_path = getattr(err, "from_path", None) or self._last_hops[0]
        from_path = getattr(err, "to_path", None) or self._last_hops[1]
        if isinstance(to_path, list):
            to_path = to_path[0] if to_path else None
        if isinstance(from_path, list):
            from_path = from_path[0] if from_path else None
        if not to_path or not from_path:
            log.info("MSRP connection {name}: cannot answer broken request {tid}: {why}",
                     name=self.name, tid=tid, why=err.reason)
            return
        self.write_frame(MSRPResponse(tid, err.code, err.reason[:200],
                                      [("To-Path", to_path), ("From-Path", from_path)]))

    def _on_response(self, resp: MSRPResponse) -> None:
        entry = self.pending.pop(resp.transaction_id, None)
        if entry is None:
            return  # late (after a timeout) or not ours: nothing to do
        msg, call = entry
        if call is not None and call.active():
            call.cancel()
        msg.outstanding.pop(resp.transaction_id, None)
        if resp.status >= 300:
            self._fail(msg, resp.status, resp.comment)  # 413 included: stop the rest
        else:
            msg.maybe_succeed()
        if msg.done:
            self._inflight.discard(msg)
        if self._queue:
            self.pump()

    def _on_request(self, req: MSRPRequest) -> None:
        method = req.method
        to_path, from_path = req.to_path, req.from_path
        if to_path and from_path:
            self._last_hops = (from_path[0], to_path[0])
        if method == "REPORT":
            try:
                session = self.table.match(req, self)
            except SessionError:
                return  # REPORTs are never answered
            if session.link is None:
                session.bind(self)
            session.receive_report(req)
            return
        if method != "SEND":
            self._answer(req, 501)
            return
        try:
            session = self.table.match(req, self)
            if session.link is None:
                session.bind(self)
            status = session.receive_send(req)
        except SessionError as e:
            self._answer(req, e.code, e.comment)
            return
        self._answer(req, status)

    def _answer(self, req: MSRPRequest, status: int, comment: str | None = None) -> None:
        try:
            fr = req.failure_report
        except MSRPParseError:
            fr = "yes"
        if wants_response(fr, status):
            self.write_frame(build_response(req, status, comment))

    def connection_lost(self, reason: str) -> None:
        """Fail everything in flight, tell every session once, leave nothing behind."""
        if self.lost:
            return
        self.lost = True
        for c in (self._idle_call, self._frame_call):
            if c is not None and c.active():
                c.cancel()
        self._idle_call = self._frame_call = None
        for _, call in self.pending.values():
            if call is not None and call.active():
                call.cancel()
        self.pending.clear()
        self._queue.clear()
        self._queued_bytes = 0
        inflight = list(self._inflight)
        self._inflight.clear()
        for msg in inflight:
            msg.fail(CONNECTION_LOST, f"connection lost: {reason}")
        sessions, self.sessions = list(self.sessions), set()
        for session in sessions:
            session.link_lost(reason)
