"""The gateway's session table: life cycle, the sweep, MI management and how sessions end.

``GatewayBase`` holds the registry and what both directions share; the two directions
(``page_to_session.PageToSession``, ``session_to_page.SessionToPage``) extend it and
``Gateway`` joins them.  ``_SessionHandler`` is what the UA is given for each session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from msrp_gateway.registry import (
    DuplicateKey,
    EndSessionFailed,
    GatewaySession,
    GatewaySettings,
    Origin,
    Registry,
    RegistryError,
    SessionNotFound,
    State,
    check_key,
    parse_content_types,
)

from msrp_gateway.stats import GatewayCounters

from .delivery import PendingAnswer, setup_failure_status
from .replies import (
    ERR_DUPLICATE,
    ERR_LIMIT,
    ERR_UA,
    SETUP_FAILED_EVENT,
    reason_of,
    reply,
    status_of,
)

__all__ = ["GatewayBase", "Clock", "DelayedCall"]

log = Logger(namespace="msrp_gateway.gateway")


class DelayedCall(Protocol):
    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the gateway uses of IReactorTime (the reactor, or task.Clock in tests)."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> DelayedCall: ...


class _SessionHandler:
    """The UA handler of one gateway session: UA notifications name the session directly,
    so they work even when they arrive before `ua.start`/`ua.answer` has returned."""

    __slots__ = ("_gw", "_session")

    def __init__(self, gw: GatewayBase, session: GatewaySession) -> None:
        self._gw = gw
        self._session = session

    def established(self, session_id: str) -> None:
        self._gw._on_established(self._session, session_id)

    def failed(self, session_id: str, code: int | None, reason: str | None) -> None:
        self._gw._on_failed(self._session, code, reason)

    def terminated(self, session_id: str, why: str) -> None:
        self._gw._on_terminated(self._session, why)

    def message_received(self, session_id: str, msg: Any) -> None:
        self._gw._on_message(self._session, msg)

    def report_received(self, session_id: str, report: Any) -> None:
        """A REPORT is a delivery notice for a body we sent: never passed on as a MESSAGE,
        but a failure one means a page-mode sender's text was lost, so it is logged."""
        _log_report(self._session.key, report)


class GatewayBase:
    """The session table and what both directions share; see the package docstring."""

    def __init__(
        self,
        reactor: Clock,
        ua: Any,
        sip_stack: Any,
        settings: Any = None,
        emit_event: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.reactor: Clock = reactor
        self.ua = ua
        self.sip_stack = sip_stack
        self.settings = GatewaySettings.from_any(settings)
        # MESSAGEs waiting for their end-to-end answer; each is an open SIP server
        # transaction, so [sip] max_transactions bounds it, and each has its timer.
        self._waiting: set[PendingAnswer] = set()
        self.emit_event = emit_event
        self.registry = Registry(self.settings.hash_size, self.settings.max_sessions)
        self._sweeper: task.LoopingCall | None = None
        self._stopping = False
        self._pending_messages = 0
        #: msrp_gateway: counters (``stats.register_gateway`` names them)
        self.stats = GatewayCounters()

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the sweep: every cleanup_interval, end sessions idle past their timeouts."""
        self._stopping = False
        if self._sweeper is None or not self._sweeper.running:
            self._sweeper = task.LoopingCall(self.sweep)
            self._sweeper.clock = cast(IReactorTime, self.reactor)
            self._sweeper.start(self.settings.cleanup_interval, now=False)

    def stop(self) -> defer.Deferred[None]:
        """Refuse new work, BYE every session and fire once all have ended (or after
        stop_timeout seconds), leaving no timer behind."""
        self._stopping = True
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
        ends = [self._end(sess, "gateway shutdown")[1] for sess in self.registry]
        for pending in list(self._waiting):  # SENDs still out: no answer will come now
            pending.answer(503, "Service Unavailable")
        waiting: list[defer.Deferred[Any]] = [d for d in ends if d is not None and not d.called]
        ua_stop = getattr(self.ua, "stop", None)
        if callable(ua_stop):  # the UA's stop waits for the answers to our BYEs
            try:
                waiting.append(defer.maybeDeferred(ua_stop, deadline=self.settings.stop_timeout))
            except Exception:  # noqa: BLE001
                log.failure("UA stop failed")
            waiting = [d for d in waiting if not d.called]
        done: defer.Deferred[None] = defer.Deferred()
        if not waiting:
            done.callback(None)
            return done
        remaining = [len(waiting)]

        def finish() -> None:
            if not done.called:
                if timer.active():
                    timer.cancel()
                done.callback(None)

        def one_closed(_: object) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                finish()

        def timed_out() -> None:
            log.warn("shutdown: {n} MSRP sessions did not end within {t} s",
                     n=remaining[0], t=self.settings.stop_timeout)
            finish()

        timer = self.reactor.callLater(self.settings.stop_timeout, timed_out)
        for d in waiting:
            d.addBoth(one_closed)
        return done

    def sweep(self) -> int:
        """End sessions with no SEND for session_timeout or no MESSAGE for message_timeout
        (both counted from creation). Returns how many were ended."""
        now = self.reactor.seconds()
        s_timeout = self.settings.session_timeout
        m_timeout = min(self.settings.message_timeout, s_timeout)
        ended = 0
        for sess in self.registry:
            since_send = now - sess.last_send
            since_message = now - sess.last_message
            if since_send >= s_timeout or since_message >= m_timeout:
                log.info(
                    "gateway session {key} timed out ({since_message:.0f} s since last "
                    "MESSAGE, {since_send:.0f} s since last SEND)",
                    key=sess.key, since_message=since_message, since_send=since_send,
                )
                self._end(sess, "timeout")
                ended += 1
        return ended

    # -- the script functions' common checks ------------------------------------------

    def _check_call(self, req: Any, function: str, method: str, key: str,
                    content_types: str | Iterable[str]) -> tuple[str, ...] | None:
        """What `msg_to_msrp` and `msrp_gw_answer` check first: a usable key and content
        type list, and the one request method each is for (a 202 to an INVITE would open
        a dialog nobody tracks). These are the script's mistakes, so the request is
        answered 500 and None returned (the caller returns ERR_PARAMS); else the types."""
        try:
            check_key(key)
            types = parse_content_types(content_types)
        except ValueError as e:
            log.error("{function}: {error}", function=function, error=str(e))
            reply(req, 500, "Server Internal Error")
            return None
        if req.method != method:
            log.error("{function} called for a {method} request (only {expected})",
                      function=function, method=req.method, expected=method)
            reply(req, 500, "Server Internal Error")
            return None
        return types

    def _add(self, req: Any, function: str, sess: GatewaySession) -> int | None:
        """Put a new session in the table; None once it is in. When the table refuses it
        the request is answered (486 for a key in use, 503 at max_sessions) and the
        script's return code given back."""
        try:
            self.registry.add(sess)
        except RegistryError as e:
            log.warn("{function} {key}: {error}", function=function, key=sess.key,
                     error=str(e))
            if isinstance(e, DuplicateKey):
                reply(req, 486, "Busy Here")
                return ERR_DUPLICATE
            reply(req, 503, "Service Unavailable")
            return ERR_LIMIT
        return None

    def _ua_refused(self, req: Any, sess: GatewaySession, error: BaseException) -> int:
        """`ua.start`/`ua.answer` raised (logged by the caller): the session never was, so
        it leaves the table and the request hears the UA's status (a UAError's code,
        reason and headers; 500 for anything else). Returns ERR_UA."""
        self.registry.remove(sess)
        sess.state = State.ENDED
        self.stats.sessions_setup_failed += 1
        code = status_of(error)
        reply(req, code, getattr(error, "reason", None) or reason_of(code),
              headers=getattr(error, "headers", ()))
        return ERR_UA

    # -- management --------------------------------------------------------------------

    def session(self, key: str) -> GatewaySession | None:
        return self.registry.get(key)

    def __len__(self) -> int:
        return len(self.registry)

    def list_sessions(self) -> list[dict[str, Any]]:
        """MI listing: OpenSIPS' four string members first, then ours."""
        now = self.reactor.seconds()
        return [
            {
                "key": s.key,
                "msg_side_to": s.to_uri,
                "msg_side_ruri": s.ruri,
                "msrp_ua_session_id": s.ua_session_id if s.established else "",
                "msg_side_from": s.from_uri,
                "state": s.state.value,
                "opened_by": s.origin.value,
                "age": int(now - s.created),
                "idle_message": int(now - s.last_message),
                "idle_send": int(now - s.last_send),
                "queued": len(s.queue),
            }
            for s in self.registry
        ]

    def end_session(self, key: str) -> None:
        """MI end: BYE the MSRP side and forget the session (as OpenSIPS, even when the UA
        could not end it, which raises EndSessionFailed)."""
        sess = self.registry.get(key)
        if sess is None:
            raise SessionNotFound(f"no gateway session with key {key!r}")
        ok, _ = self._end(sess, "ended by MI")
        if not ok:
            raise EndSessionFailed(f"the UA could not end session {sess.ua_session_id!r}")

    # -- UA notifications each direction handles (see _SessionHandler) -----------------

    def _on_established(self, sess: GatewaySession, session_id: str) -> None:
        """The MSRP side is up (page_to_session.py flushes what was queued)."""
        raise NotImplementedError

    def _on_message(self, sess: GatewaySession, msg: Any) -> None:
        """A SEND arrived (session_to_page.py pages it)."""
        raise NotImplementedError

    # -- how sessions end --------------------------------------------------------------

    def _end(self, sess: GatewaySession, why: str) -> tuple[bool, defer.Deferred[None] | None]:
        """Take the session out of the table and end its UA session (BYE or CANCEL)."""
        if sess.state is State.ENDED:
            return True, sess.closed
        self.registry.remove(sess)
        sess.state = State.ENDED
        sess.closed = defer.Deferred()
        self._drop_queue(sess, why)
        if not sess.ua_session_id:
            sess.closed.callback(None)
            return True, sess.closed
        try:
            ok = bool(self.ua.end(sess.ua_session_id))
        except Exception as e:  # noqa: BLE001
            log.error("gateway session {key}: UA end failed: {error}", key=sess.key, error=str(e))
            ok = False
        if not ok and not sess.closed.called:
            sess.closed.callback(None)
        log.info("gateway session {key} ended: {why}", key=sess.key, why=why)
        return ok, sess.closed

    def _drop_queue(self, sess: GatewaySession, why: str) -> int:
        n = len(sess.queue)
        if n:
            self.stats.messages_failed += n
            log.error("gateway session {key}: {n} queued message(s) not delivered ({why})",
                      key=sess.key, n=n, why=why)
            for item in sess.queue:
                if isinstance(item.result, PendingAnswer):  # end_to_end: its MESSAGE waits
                    item.result.answer(503 if self._stopping else 480)
                elif item.result is not None and not item.result.called:
                    item.result.callback(480)
            sess.queue.clear()
            sess.queued_bytes = 0
        return n

    def _closed(self, sess: GatewaySession) -> None:
        if sess.closed is not None and not sess.closed.called:
            sess.closed.callback(None)

    def _on_failed(self, sess: GatewaySession, code: int | None, reason: str | None) -> None:
        if sess.state is State.ENDED:
            self._closed(sess)
            return
        self.registry.remove(sess)
        sess.state = State.ENDED
        self.stats.sessions_setup_failed += 1
        log.error("gateway session {key}: MSRP side set-up failed: {code} {reason}",
                  key=sess.key, code=code, reason=reason)
        if self.settings.end_to_end:  # the waiting MESSAGEs hear the INVITE's outcome
            status, phrase = setup_failure_status(code, reason)
            for item in sess.queue:
                if isinstance(item.result, PendingAnswer):
                    item.result.answer(status, phrase)
        self._drop_queue(sess, "set-up failed")
        if sess.origin is Origin.MESSAGE:
            params = {
                "key": sess.key,
                "from_uri": sess.from_uri,
                "to_uri": sess.to_uri,
                "ruri": sess.ruri,
                "code": int(code) if code is not None else None,
                "reason": reason if code is not None else None,
            }
            self._emit(SETUP_FAILED_EVENT, params)

    def _on_terminated(self, sess: GatewaySession, why: str) -> None:
        if sess.state is State.ENDED:
            self._closed(sess)
            return
        self.registry.remove(sess)
        sess.state = State.ENDED
        self._drop_queue(sess, why)
        log.info("gateway session {key} ended by the MSRP side: {why}", key=sess.key, why=why)

    def _emit(self, name: str, params: dict[str, Any]) -> None:
        if self.emit_event is None:
            log.warn("{name} {params} (no event receiver)", name=name, params=params)
            return
        try:
            self.emit_event(name, params)
        except Exception:  # noqa: BLE001 - a broken subscriber must not break the gateway
            log.failure("event {name} delivery failed", name=name)


def _log_report(key: str, report: Any) -> None:
    """Warn of a REPORT whose Status is not 200 (or unreadable), with the key and Status."""
    try:
        status = report.status
    except Exception as e:  # noqa: BLE001 - MSRPParseError for a broken Status header
        log.warn("gateway session {key}: REPORT with an unreadable Status: {error}",
                 key=key, error=str(e))
        return
    code = getattr(status, "code", None)
    if code == 200:
        log.debug("gateway session {key}: success REPORT", key=key)
        return
    log.warn("gateway session {key}: failure REPORT for message {message_id}: Status "
             "{status}", key=key, status=str(status) if status is not None else None,
             code=code, message_id=getattr(report, "message_id", None))


def ua_types(types: tuple[str, ...]) -> list[str]:
    """The accepted content types as the UA takes them."""
    return list(types)
