"""One MSRP connection without the socket (`LinkCore`), sending `OutgoingMessage`s.

Sans-IO apart from Deferreds: fed bytes, it writes bytes through a callable, keeps the
transactions in flight, interleaves chunks of queued messages fairly and runs its idle and
frame timers on an injected clock. `transport.py` wires it to TCP/TLS; `session.py`
matches the requests it reads to sessions.
"""

from __future__ import annotations

import heapq
import secrets
from collections import deque
from typing import TYPE_CHECKING, Callable

from twisted.internet import defer
from twisted.logger import Logger

from .message import FrameParser, MSRPHeaders, MSRPParseError, MSRPRequest, MSRPResponse
from .outgoing import OutgoingMessage
from .uri import parse_msrp_uri
from .rules import (
    CONNECTION_LOST,
    QUEUE_FULL,
    REASONS,
    Clock,
    MSRPCounters,
    MSRPSendError,
    SessionError,
    SessionSettings,
    Timer,
    build_response,
    wants_response,
)

if TYPE_CHECKING:
    from .session import MSRPSession, SessionTable

__all__ = ["LinkCore", "OutgoingMessage"]

log = Logger()


# ---- one connection -------------------------------------------------------------------

class LinkCore:
    """An MSRP connection without the socket: framing, transactions, fair chunk sending.

    `write(bytes)` puts bytes on the wire, `lose()` closes it; the adapter calls
    `data_received`, `connection_lost`, `pause`/`resume` (flow control). `own_uri()`
    gives the stack's URI (None if unknown), used as From-Path when a broken request's
    To-Path cannot be echoed; `counters` (shared by the stack) counts what went unanswered.
    """

    def __init__(self, clock: Clock, table: SessionTable, settings: SessionSettings,
                 parser: FrameParser, write: Callable[[bytes], None],
                 lose: Callable[[], None], on_idle: Callable[[LinkCore], None],
                 name: str = "", *, own_uri: Callable[[], str | None] | None = None,
                 counters: MSRPCounters | None = None) -> None:
        self.clock = clock
        self.table = table
        self.settings = settings
        self.parser = parser
        self._write = write
        self._lose = lose
        self._on_idle = on_idle
        self.name = name
        self._own_uri = own_uri
        self.counters = counters if counters is not None else MSRPCounters()
        self.sessions: set[MSRPSession] = set()
        # SENDs awaiting their response: tid -> message. Their deadlines wait in one heap
        # under one DelayedCall (the earliest), not one timer per SEND.
        self.pending: dict[str, OutgoingMessage] = {}
        self._deadlines: list[tuple[float, int, str]] = []
        self._deadline_call: Timer | None = None
        self._deadline_at = 0.0
        self._deadline_seq = 0
        # Transaction ids need only be unique on this connection (RFC 4975 s.7.1): a
        # random prefix per connection and a counter (Message-IDs stay from `secrets`).
        self._tid_prefix = secrets.token_hex(6)
        self._tid_seq = 0
        self._queue: deque[OutgoingMessage] = deque()
        self._queued_bytes = 0
        self._inflight: set[OutgoingMessage] = set()
        self.paused = False
        self.lost = False
        self.closing = False  # asked to close: not to be reused for new sessions
        self._unsent = 0
        self._idle_call: Timer | None = None
        self._frame_call: Timer | None = None
        self._last_hops: tuple[str | None, str | None] = (None, None)
        # Requests other than SEND we sent (AUTH): tid -> (result, its timeout).
        self._requests: dict[str, tuple[defer.Deferred[MSRPResponse], Timer]] = {}
        self.persistent = False  # a relay connection: never closed for being idle
        self.on_lost: Callable[[str], None] | None = None
        self._arm_idle()

    def new_tid(self) -> str:
        """A transaction id unique on this connection: `<random prefix>.<counter>` (the
        dot keeps it apart from the hex ids of `new_id`, e.g. a relay's AUTH)."""
        self._tid_seq += 1
        return f"{self._tid_prefix}.{self._tid_seq:x}"

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
        for tid, msg in list(self.pending.items()):
            if msg.session is session:
                del self.pending[tid]
        self._fail_session_messages(session, why)
        self._arm_deadline()
        if not self.sessions:
            self._arm_idle()

    def _fail_session_messages(self, session: MSRPSession, why: str) -> None:
        # Outstanding messages of a closed session fail once each.
        for msg in list(self._inflight):
            if msg.session is session:
                self._inflight.discard(msg)
                self._fail(msg, CONNECTION_LOST, why)

    def keep_open(self) -> None:
        """Never close this connection for being idle (our relay connection)."""
        self.persistent = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _arm_idle(self) -> None:
        if self.lost or self.sessions or self.persistent:
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
        self._put(data)

    def _put(self, data: bytes) -> None:
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
                               f"({self.settings.max_queued_messages} messages, "
                               f"max_queued_messages)")
        if self._queued_bytes + msg.size > self.settings.max_queued_bytes:
            raise SessionError(QUEUE_FULL, f"send queue full "
                               f"({self.settings.max_queued_bytes} bytes, max_queued_bytes)")
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
            tid, data = frame
            if msg.failure_report != "no":
                self.pending[tid] = msg
                msg.outstanding[tid] = None
                self._add_deadline(tid)
            self._write(data)
            if msg.written_all:  # its last chunk is out: it waits for responses only
                self._queued_bytes -= msg.size
                msg.maybe_succeed()
                if msg.done:
                    self._inflight.discard(msg)
            else:
                queue.append(msg)

    def _fail(self, msg: OutgoingMessage, code: int, comment: str | None) -> None:
        """Fail a message and forget its other transactions (their timers are cancelled).

        Chunks not yet sent are replaced by a `#` chunk (RFC 4975 s.7.1.1), except after
        a 413, which already told us the peer dropped the message.
        """
        for tid in list(msg.outstanding):
            self.pending.pop(tid, None)
        if not self.pending and self._deadline_call is not None:
            self._arm_deadline()
        if code != 413 and not self.lost and not msg.done:
            data = msg.abort_frame()
            if data is not None:
                self._write(data)
        msg.fail(code, comment)

    # -- response deadlines: one heap, one DelayedCall for the earliest -----------------
    def _add_deadline(self, tid: str) -> None:
        clock = self.clock
        deadline = clock.seconds() + self.settings.response_timeout
        self._deadline_seq += 1
        heap = self._deadlines
        heapq.heappush(heap, (deadline, self._deadline_seq, tid))
        # Answered SENDs leave their entry behind (dropped when it reaches the top);
        # rebuild when they outnumber the live ones, so the heap stays O(in flight).
        if len(heap) > 64 + 2 * len(self.pending):
            pending = self.pending
            heap[:] = [e for e in heap if e[2] in pending]
            heapq.heapify(heap)
        call = self._deadline_call
        if call is None or not call.active() or deadline < self._deadline_at:
            self._arm_deadline()

    def _arm_deadline(self) -> None:
        """(Re)arm the one DelayedCall for the earliest live deadline; none when idle."""
        heap, pending = self._deadlines, self.pending
        while heap and heap[0][2] not in pending:
            heapq.heappop(heap)
        call = self._deadline_call
        if not heap or self.lost:
            heap.clear()
            if call is not None and call.active():
                call.cancel()
            self._deadline_call = None
            return
        first = heap[0][0]
        if call is not None and call.active():
            if self._deadline_at <= first:
                return  # fires first and re-arms then
            call.cancel()
        self._deadline_at = first
        self._deadline_call = self.clock.callLater(max(0.0, first - self.clock.seconds()),
                                                   self._deadlines_due)

    def _deadlines_due(self) -> None:
        self._deadline_call = None
        heap = self._deadlines
        # A hair of tolerance: `now + (first - now)` may round one ulp below `first`.
        now = self.clock.seconds() + 1e-9
        while heap and heap[0][0] <= now and not self.lost:
            tid = heapq.heappop(heap)[2]
            if tid in self.pending:
                self._timeout(tid)
        self._arm_deadline()

    def _timeout(self, tid: str) -> None:
        msg = self.pending.pop(tid, None)
        if msg is None:
            return
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

        RFC 7.2: the response goes to the first From-Path URI and names us as From-Path.
        A To-Path we cannot echo (garbage) is replaced by our own URI; absent paths fall
        back to the hop URIs last seen on this connection (both are single hops). With no
        usable From-Path no answer can be addressed: logged (rate-limited) and counted.
        """
        tid = err.transaction_id
        if tid is None or err.response:
            return
        if err.from_path:
            to_path = _usable_uri(err.from_path[0])
        else:
            to_path = self._last_hops[0]
        if err.to_path:
            from_path = _usable_uri(err.to_path[0])
        else:
            from_path = self._last_hops[1]
        if from_path is None and self._own_uri is not None:
            from_path = self._own_uri()
        if not to_path or not from_path:
            self.counters.unanswerable += 1
            if self.counters.may_log("unanswerable", self.clock.seconds()):
                log.warn("MSRP connection {name}: cannot answer broken request {tid} "
                         "(no usable From-Path): {why}; {n} such request(s) so far",
                         name=self.name, tid=tid, why=err.reason,
                         n=self.counters.unanswerable)
            return
        headers = MSRPHeaders([("To-Path", to_path), ("From-Path", from_path)])
        resp = MSRPResponse(tid, err.code, err.reason[:200], headers)
        try:
            resp.to_bytes()
        except ValueError:  # a comment s.9 will not carry: the bare reason phrase will do
            resp = MSRPResponse(tid, err.code, REASONS.get(err.code), headers)
        self.write_frame(resp)

    def request(self, req: MSRPRequest, timeout: float) -> defer.Deferred[MSRPResponse]:
        """Send a request that is not a message (AUTH) and fire with its response.

        Errbacks `MSRPSendError`: 408 after `timeout`, 503 when the connection is lost or
        `max_inflight` requests already wait."""
        if self.lost or self.closing:
            return defer.fail(MSRPSendError(CONNECTION_LOST, "connection lost"))
        if len(self._requests) >= self.settings.max_inflight:
            return defer.fail(MSRPSendError(QUEUE_FULL, "too many requests in flight"))
        tid = req.transaction_id
        data = req.to_bytes()  # ValueError for a request s.9 forbids: the caller's bug
        d: defer.Deferred[MSRPResponse] = defer.Deferred()

        def expire() -> None:
            if self._requests.pop(tid, None) is not None:
                d.errback(MSRPSendError(408, f"no response to {req.method} in time"))

        self._requests[tid] = (d, self.clock.callLater(timeout, expire))
        self._write(data)
        return d

    def _on_response(self, resp: MSRPResponse) -> None:
        waiting = self._requests.pop(resp.transaction_id, None)
        if waiting is not None:
            if waiting[1].active():
                waiting[1].cancel()
            waiting[0].callback(resp)
            return
        pending = self.pending
        msg = pending.pop(resp.transaction_id, None)
        if msg is None:
            return  # late (after a timeout) or not ours: nothing to do
        if not pending and self._deadline_call is not None:
            self._arm_deadline()  # nothing left to time out: no timer left behind
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
        """A request from the parser (so its id and paths are already checked)."""
        method = req.method
        to_path, from_path = req.to_path, req.from_path
        if to_path and from_path:
            self._last_hops = (from_path[0], to_path[0])
        if method == "REPORT":
            try:
                session = self.table.match(req, self, to_path, from_path)
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
            session = self.table.match(req, self, to_path, from_path)
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
        if not wants_response(fr, status):
            return
        reason = REASONS.get(status)
        if comment is None or comment == reason:
            # Built from parts the parser checked (id, paths) and our own reason phrase:
            # the bytes `build_response(req, status).to_bytes()` gives, without re-checking.
            to_path, from_path = req.from_path, req.to_path
            if to_path and from_path:
                if self.lost or self.closing:
                    return
                tid = req.transaction_id
                start = f"{status:03d}" if reason is None else f"{status:03d} {reason}"
                self._put(f"MSRP {tid} {start}\r\nTo-Path: {to_path[0]}\r\nFrom-Path: "
                          f"{from_path[0]}\r\n-------{tid}$\r\n".encode("utf-8"))
                return
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
        self.pending.clear()
        self._arm_deadline()
        self._queue.clear()
        self._queued_bytes = 0
        inflight = list(self._inflight)
        self._inflight.clear()
        for msg in inflight:
            msg.fail(CONNECTION_LOST, f"connection lost: {reason}")
        requests, self._requests = list(self._requests.values()), {}
        for d, call in requests:
            if call.active():
                call.cancel()
            d.errback(MSRPSendError(CONNECTION_LOST, f"connection lost: {reason}"))
        sessions, self.sessions = list(self.sessions), set()
        for session in sessions:
            session.link_lost(reason)
        if self.on_lost is not None:
            self.on_lost(reason)


def _usable_uri(uri: str) -> str | None:
    """`uri` if it may go into a path header we write, else None (a peer's garbage)."""
    try:
        parse_msrp_uri(uri)
    except MSRPParseError:
        return None
    return uri
