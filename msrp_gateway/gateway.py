"""The gateway: joins a page-mode peer (SIP MESSAGE) to a session-mode peer (MSRP).

OpenSIPS' msrp_gateway re-built: `msg_to_msrp` and `msrp_gw_answer` are the two functions a
routing script calls; the session table, its sweep and the UA notifications live here.
Time comes from the injected reactor; the UA and the SIP stack are injected too, so the
whole module runs on `task.Clock` against the fakes of `msrp_gateway.testing`.

The request view `req` the script functions take needs only: `method`, `ruri`, `from_uri`,
`to_uri` (str), `body` (bytes), `content_type` (str | None), `responded` (bool),
`reply(code, reason=None, *, headers=())`, `transaction` (the ServerTransaction) and a
writable `owned` flag (set when the transaction is handed to the UA, which answers it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from msrp_gateway.registry import (
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

__all__ = [
    "SETUP_FAILED_EVENT",
    "OK",
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

log = Logger(namespace="msrp_gateway.gateway")

SETUP_FAILED_EVENT = "E_MSRP_GW_SETUP_FAILED"

# Script function return codes: 1 ok, negative on error (as OpenSIPS; the negatives tell why).
OK = 1
ERR_PARAMS = -1  # bad key, URI, body or content type: nothing created
ERR_DUPLICATE = -2  # msrp_gw_answer with a key already in use
ERR_LIMIT = -3  # max_sessions or the per-session queue bound: 503
ERR_UA = -4  # the UA refused or the gateway is stopping

# Seconds a page-mode sender is asked to wait (Retry-After) when a bound refuses its MESSAGE.
RETRY_AFTER = 5

# SIP final status of a generated MESSAGE -> MSRP status of the failure REPORT (RFC 4975
# s.10); anything else is reported as 400 with the SIP status in the comment.
_SIP_TO_MSRP_STATUS = {400: 400, 403: 403, 408: 408, 413: 413, 415: 415, 488: 415, 503: 408}


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

    def __init__(self, gw: Gateway, session: GatewaySession) -> None:
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


class Gateway:
    """The session table and the two script functions; see the module docstring."""

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
        self.emit_event = emit_event
        self.registry = Registry(self.settings.hash_size, self.settings.max_sessions)
        self._sweeper: task.LoopingCall | None = None
        self._stopping = False
        self._pending_messages = 0

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

    # -- script functions --------------------------------------------------------------

    def msg_to_msrp(self, req: Any, key: str, content_types: str | Iterable[str]) -> int:
        """Send a MESSAGE's body to the MSRP session `key`, opening it (INVITE out) if there
        is none. Answers the MESSAGE: 202 once the body is sent or queued, else 4xx/5xx."""
        try:
            check_key(key)
            types = parse_content_types(content_types)
        except ValueError as e:
            log.error("msg_to_msrp: {error}", error=str(e))
            _reply(req, 500, "Server Internal Error")
            return ERR_PARAMS
        if req.method != "MESSAGE":
            # As OpenSIPS: a 202 to an INVITE would open a dialog nobody tracks.
            log.error("msg_to_msrp called for a {method} request (only MESSAGE)",
                      method=req.method)
            _reply(req, 500, "Server Internal Error")
            return ERR_PARAMS
        if self._stopping:
            _reply(req, 503, "Service Unavailable")
            return ERR_UA
        body = req.body
        if not body:
            _reply(req, 400, "Missing Message Body")
            return ERR_PARAMS
        content_type = req.content_type
        if not content_type:
            _reply(req, 400, "Missing Content-Type")
            return ERR_PARAMS

        sess = self.registry.get(key)
        now = self.reactor.seconds()
        if sess is not None:
            if not type_accepted(content_type, sess.content_types):
                _reply(req, 415, "Unsupported Media Type",
                       headers=[("Accept", ", ".join(sess.content_types))])
                return ERR_PARAMS
            sess.last_message = now
            if sess.established:
                refused = self._send_now(sess, content_type, body)
                if refused is not None:
                    return self._refuse_message(req, sess, refused)
            elif not self._enqueue(sess, req, content_type, body):
                return ERR_LIMIT
            _reply(req, 202, "Accepted")
            return OK

        if not type_accepted(content_type, types):
            _reply(req, 415, "Unsupported Media Type", headers=[("Accept", ", ".join(types))])
            return ERR_PARAMS
        # The MSRP side is To; the MESSAGEs we generate go back to the MESSAGE's From.
        sess = GatewaySession(
            key=key, from_uri=req.to_uri, to_uri=req.from_uri, ruri=req.from_uri,
            origin=Origin.MESSAGE, content_types=types,
            created=now, last_send=now, last_message=now,
        )
        try:
            self.registry.add(sess)
        except RegistryError as e:
            log.warn("msg_to_msrp {key}: {error}", key=key, error=str(e))
            _reply(req, e.code if isinstance(e, RegistryFull) else 500, _reason(e.code))
            return ERR_LIMIT if isinstance(e, RegistryFull) else ERR_DUPLICATE
        if not self._enqueue(sess, req, content_type, body):
            self.registry.remove(sess)
            sess.state = State.ENDED
            return ERR_LIMIT
        try:
            sess.ua_session_id = self.ua.start(
                _ua_types(types), req.from_uri, req.to_uri, req.ruri, _SessionHandler(self, sess)
            )
        except Exception as e:  # noqa: BLE001 - the UA's refusal becomes the MESSAGE's answer
            self.registry.remove(sess)
            sess.state = State.ENDED
            code = _status_of(e)
            log.error("msg_to_msrp {key}: the UA could not start a session: {error}",
                      key=key, error=str(e))
            _reply(req, code, getattr(e, "reason", None) or _reason(code),
                   headers=getattr(e, "headers", ()))
            return ERR_UA
        if sess.state is State.ENDED:  # failed synchronously; already reported by the event
            _reply(req, 503, "Service Unavailable")
            return ERR_UA
        log.info("gateway session {key} opened by MESSAGE (UA session {sid})",
                 key=key, sid=sess.ua_session_id)
        _reply(req, 202, "Accepted")
        return OK

    def msrp_gw_answer(
        self,
        req: Any,
        key: str,
        content_types: str | Iterable[str],
        from_uri: str,
        to_uri: str,
        ruri: str,
    ) -> int:
        """Answer an initial INVITE through the UA; every SEND on the session becomes a
        MESSAGE from `from_uri` to `to_uri` sent to `ruri`. Nothing is created on error."""
        try:
            check_key(key)
            types = parse_content_types(content_types)
        except ValueError as e:
            log.error("msrp_gw_answer: {error}", error=str(e))
            _reply(req, 500, "Server Internal Error")
            return ERR_PARAMS
        if req.method != "INVITE":
            log.error("msrp_gw_answer called for a {method} request", method=req.method)
            _reply(req, 500, "Server Internal Error")
            return ERR_PARAMS
        checked: list[str] = []
        for name, value in (("From", from_uri), ("To", to_uri), ("RURI", ruri)):
            uri = strip_uri(value) if isinstance(value, str) else ""
            if not uri or not valid_uri(uri):
                log.error("msrp_gw_answer {key}: not a valid SIP URI in {name} param [{value}]",
                          key=key, name=name, value=value)
                _reply(req, 400, f"Bad {name} URI")
                return ERR_PARAMS
            checked.append(uri)
        if self._stopping:
            _reply(req, 503, "Service Unavailable")
            return ERR_UA
        now = self.reactor.seconds()
        sess = GatewaySession(
            key=key, from_uri=checked[0], to_uri=checked[1], ruri=checked[2],
            origin=Origin.INVITE, content_types=types,
            created=now, last_send=now, last_message=now,
        )
        try:
            self.registry.add(sess)
        except RegistryError as e:
            log.warn("msrp_gw_answer {key}: {error}", key=key, error=str(e))
            if isinstance(e, DuplicateKey):
                _reply(req, 486, "Busy Here")
                return ERR_DUPLICATE
            _reply(req, 503, "Service Unavailable")
            return ERR_LIMIT
        txn = getattr(req, "transaction", req)
        try:
            sess.ua_session_id = self.ua.answer(txn, _ua_types(types), _SessionHandler(self, sess))
        except Exception as e:  # noqa: BLE001 - UAError(code, reason): we answer, UA did not
            self.registry.remove(sess)
            sess.state = State.ENDED
            code = _status_of(e)
            log.warn("msrp_gw_answer {key}: offer refused: {code} {error}",
                     key=key, code=code, error=str(e))
            _reply(req, code, getattr(e, "reason", None) or _reason(code),
                   headers=getattr(e, "headers", ()))
            return ERR_UA
        try:
            req.owned = True
        except AttributeError:
            pass
        log.info("gateway session {key} opened by INVITE (UA session {sid})",
                 key=key, sid=sess.ua_session_id)
        return OK

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

    def send_message(
        self,
        from_uri: str,
        to_uri: str,
        ruri: str,
        body: bytes,
        content_type: str = "text/plain",
        *,
        key: str = "",
    ) -> defer.Deferred[tuple[int, str]]:
        """Send a page-mode MESSAGE; fires (status, reason) of its final answer, 408 on
        timeout and 503 when it could not be sent. Never errbacks."""
        if self._pending_messages >= self.settings.max_pending_messages:
            log.error("MESSAGE for gateway session {key} not sent: max_pending_messages "
                      "({n}) reached", key=key, n=self.settings.max_pending_messages)
            return defer.succeed((503, "Too Many Pending MESSAGEs"))
        try:
            request = self.sip_stack.new_request(
                "MESSAGE", from_uri, to_uri, ruri, body=body, content_type=content_type
            )
            d = self.sip_stack.send_request(request)
        except Exception as e:  # noqa: BLE001 - a bad URI or a stack refusal
            log.error("MESSAGE for gateway session {key} not sent: {error}",
                      key=key, error=str(e))
            return defer.succeed((503, "Service Unavailable"))
        self._pending_messages += 1
        # one callback pair per MESSAGE, no closures: this runs for every SEND paged
        result: defer.Deferred[tuple[int, str]] = d.addCallbacks(
            self._message_answered, self._message_failed, callbackArgs=(key,),
            errbackArgs=(key,))
        return result

    def _message_answered(self, response: Any, key: str) -> tuple[int, str]:
        """Every MESSAGE the gateway generates (paged SENDs, failure notices) that is
        refused is logged here with its key, whoever asked for it."""
        self._pending_messages -= 1
        status = int(response.status)
        reason = str(response.reason)
        if status >= 300:
            log.warn("gateway session {key}: MESSAGE failed: {status} {reason}",
                     key=key, status=status, reason=reason)
        return (status, reason)

    def _message_failed(self, f: Failure, key: str) -> tuple[int, str]:
        self._pending_messages -= 1
        # SIPTimeout (Timer F) carries code 408, SIPTransportError 503 (s.8.1.3.1)
        code = getattr(f.value, "code", None)
        if code == 408 or type(f.value).__name__ == "SIPTimeout":
            log.warn("gateway session {key}: MESSAGE failed: {status} no final answer "
                     "(timeout)", key=key, status=408)
            return (408, "Request Timeout")
        log.warn("gateway session {key}: MESSAGE failed: {status} not sent: {error}",
                 key=key, status=503, error=f.getErrorMessage())
        return (503, "Service Unavailable")

    # -- internals ---------------------------------------------------------------------

    def _enqueue(self, sess: GatewaySession, req: Any, content_type: str, body: bytes) -> bool:
        s = self.settings
        if len(sess.queue) >= s.max_queued_messages or \
                sess.queued_bytes + len(body) > s.max_queued_bytes:
            log.warn("gateway session {key}: queue full ({n} messages, {b} bytes) while the "
                     "MSRP side is set up", key=sess.key, n=len(sess.queue), b=sess.queued_bytes)
            _reply(req, 503, "Service Unavailable", headers=[("Retry-After", str(RETRY_AFTER))])
            return False
        sess.queue.append(QueuedBody(content_type, body, defer.Deferred()))
        sess.queued_bytes += len(body)
        return True

    def _send(self, sess: GatewaySession, content_type: str, body: bytes) -> defer.Deferred[int]:
        """One queued body out as a SEND (its MESSAGE was answered already); fires the MSRP
        status (failures logged with the key, never raised)."""
        try:
            d = self.ua.send(sess.ua_session_id, content_type, body,
                             failure_report="yes", success_report="no")
        except Exception as e:  # noqa: BLE001
            d = defer.fail(e)
        result: defer.Deferred[int] = d.addErrback(_send_failed, sess.key)
        return result

    def _send_now(self, sess: GatewaySession, content_type: str,
                  body: bytes) -> tuple[int, str] | None:
        """A MESSAGE body out as a SEND on an established session. Returns None when it is
        on its way (a later failure is logged with the key: the explicit path a later
        end-to-end MESSAGE answer will hang on), or (code, comment) when the UA refused it
        on the spot: `ua.send` then returns an already failed Deferred (send queue full,
        not connected, over the peer's max-size), so the MESSAGE can still be told."""
        try:
            d = self.ua.send(sess.ua_session_id, content_type, body,
                             failure_report="yes", success_report="no")
        except Exception as e:  # noqa: BLE001 - a refusal all the same
            return (_status_of(e), str(e))
        if d.called:
            failures: list[Failure] = []
            d.addErrback(failures.append)  # takes the failure: nothing unhandled is left
            if failures:
                error = failures[0].value
                return (_status_of(error),
                        str(getattr(error, "comment", None) or failures[0].getErrorMessage()))
        d.addErrback(_send_failed, sess.key)
        return None

    def _refuse_message(self, req: Any, sess: GatewaySession,
                        refused: tuple[int, str]) -> int:
        """Answer a MESSAGE whose SEND the UA refused at once: a bound hit (503, with
        Retry-After) or a body too large for the peer (413), never a 202 and a lost body."""
        code, comment = refused
        if code == 413:
            log.warn("gateway session {key}: MESSAGE refused 413: {comment}", key=sess.key,
                     comment=comment)
            _reply(req, 413, "Request Entity Too Large")
            return ERR_PARAMS
        log.warn("gateway session {key}: MESSAGE refused 503, SEND not accepted: {code} "
                 "{comment}", key=sess.key, code=code, comment=comment)
        _reply(req, 503, "Service Unavailable", headers=[("Retry-After", str(RETRY_AFTER))])
        return ERR_LIMIT

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
            log.error("gateway session {key}: {n} queued message(s) not delivered ({why})",
                      key=sess.key, n=n, why=why)
            for item in sess.queue:
                if item.result is not None and not item.result.called:
                    item.result.callback(480)
            sess.queue.clear()
            sess.queued_bytes = 0
        return n

    def _closed(self, sess: GatewaySession) -> None:
        if sess.closed is not None and not sess.closed.called:
            sess.closed.callback(None)

    def _on_established(self, sess: GatewaySession, session_id: str) -> None:
        if sess.state is not State.SETUP:
            return
        if session_id:
            sess.ua_session_id = session_id
        sess.state = State.ESTABLISHED
        log.info("gateway session {key}: MSRP side established", key=sess.key)
        while sess.queue:
            item = sess.queue.popleft()
            sess.queued_bytes -= len(item.body)
            d = self._send(sess, item.content_type, item.body)
            if item.result is not None:
                d.chainDeferred(item.result)

    def _on_failed(self, sess: GatewaySession, code: int | None, reason: str | None) -> None:
        if sess.state is State.ENDED:
            self._closed(sess)
            return
        self.registry.remove(sess)
        sess.state = State.ENDED
        log.error("gateway session {key}: MSRP side set-up failed: {code} {reason}",
                  key=sess.key, code=code, reason=reason)
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

    def _on_message(self, sess: GatewaySession, msg: Any) -> None:
        if sess.state is State.ENDED:
            return
        sess.last_send = self.reactor.seconds()
        body = msg.body
        if not body:
            return  # empty SENDs (binding, keep-alive) carry nothing to page
        content_type = msg.content_type
        if not content_type:
            log.warn("gateway session {key}: SEND without Content-Type not paged", key=sess.key)
            self._report(sess, msg, 415, "Content-Type missing")
            return
        d = self.send_message(sess.from_uri, sess.to_uri, sess.ruri, body, content_type,
                              key=sess.key)
        d.addCallback(self._paged, sess, msg)

    def _paged(self, result: tuple[int, str], sess: GatewaySession, msg: Any) -> None:
        """The final answer to a MESSAGE made from a SEND: a failure goes back as a REPORT."""
        status, reason = result
        if status >= 300:  # already logged with the key by send_message
            self._report(sess, msg, _SIP_TO_MSRP_STATUS.get(status, 400),
                         f"MESSAGE answered {status} {reason}")

    def _report(self, sess: GatewaySession, msg: Any, code: int, comment: str) -> None:
        if getattr(msg, "failure_report", "yes") not in ("yes", "partial"):
            return
        try:
            msg.report_failure(code, comment)
        except Exception as e:  # noqa: BLE001 - the session may be gone by now
            log.warn("gateway session {key}: failure REPORT not sent: {error}",
                     key=sess.key, error=str(e))

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


def _send_failed(f: Failure, key: str) -> int:
    code = getattr(f.value, "code", None) or 500
    log.error("gateway session {key}: SEND failed: {code} {comment}", key=key,
              code=code, comment=getattr(f.value, "comment", None) or f.getErrorMessage())
    return int(code)


def _reply(req: Any, code: int, reason: str | None = None, *,
           headers: Iterable[tuple[str, str]] = ()) -> None:
    if getattr(req, "responded", False):
        return
    req.reply(code, reason, headers=list(headers))


def _reason(code: int) -> str:
    return {400: "Bad Request", 415: "Unsupported Media Type", 486: "Busy Here",
            488: "Not Acceptable Here", 500: "Server Internal Error",
            503: "Service Unavailable"}.get(code, "Error")


def _status_of(error: BaseException | None) -> int:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) and 400 <= code <= 699 else 500


def _ua_types(types: tuple[str, ...]) -> list[str]:
    return list(types)
