"""Page mode to session mode: a MESSAGE's body out as a SEND on the MSRP session of its key.

``msg_to_msrp`` opens the session (INVITE out, through the UA) when there is none and queues
bodies, bounded, while it is set up; once the UA says the MSRP side is up the queue goes out
in order.  A SEND the UA refuses on the spot turns the MESSAGE's answer into 503 or 413.

With ``delivery = "hop"`` the MESSAGE is answered 202 once its body is sent or queued.  With
``"end_to_end"`` it is answered from the SEND's outcome instead (``delivery.PendingAnswer``:
200, a mapped error, or 408/504 after ``delivery_timeout``) and ``msg_to_msrp`` returns
``PENDING`` with the request marked owned, so the router leaves it unanswered meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from msrp_gateway.registry import (
    GatewaySession,
    Origin,
    QueuedBody,
    State,
    type_accepted,
)

from msrp_gateway.stats import GatewayCounters

from .delivery import PendingAnswer
from .replies import (
    ERR_LIMIT,
    ERR_PARAMS,
    ERR_UA,
    OK,
    PENDING,
    RETRY_AFTER,
    reply,
    status_of,
)
from .sessions import GatewayBase, _SessionHandler, ua_types

__all__ = ["PageToSession"]

log = Logger(namespace="msrp_gateway.gateway")


class PageToSession(GatewayBase):
    """``msg_to_msrp`` and the SENDs it makes; see the module docstring."""

    def msg_to_msrp(self, req: Any, key: str, content_types: str | Iterable[str]) -> int:
        """Send a MESSAGE's body to the MSRP session `key`, opening it (INVITE out) if there
        is none. Answers the MESSAGE: 202 once the body is sent or queued, else 4xx/5xx;
        end_to_end: the answer follows the SEND's outcome and PENDING is returned."""
        rc = self._msg_to_msrp(req, key, content_types)
        if rc == OK or rc == PENDING:  # the body is on its way (sent or queued)
            self.stats.messages_to_msrp += 1
        return rc

    def _msg_to_msrp(self, req: Any, key: str, content_types: str | Iterable[str]) -> int:
        types = self._check_call(req, "msg_to_msrp", "MESSAGE", key, content_types)
        if types is None:
            return ERR_PARAMS
        if self._stopping:
            reply(req, 503, "Service Unavailable")
            return ERR_UA
        body = req.body
        if not body:
            reply(req, 400, "Missing Message Body")
            return ERR_PARAMS
        content_type = req.content_type
        if not content_type:
            reply(req, 400, "Missing Content-Type")
            return ERR_PARAMS

        sess = self.registry.get(key)
        now = self.reactor.seconds()
        if sess is not None:
            if not type_accepted(content_type, sess.content_types):
                reply(req, 415, "Unsupported Media Type",
                       headers=[("Accept", ", ".join(sess.content_types))])
                return ERR_PARAMS
            sess.last_message = now
            if sess.established:
                if self.settings.end_to_end:
                    return self._send_and_wait(req, sess, content_type, body)
                refused = self._send_now(sess, content_type, body)
                if refused is not None:
                    return self._refuse_message(req, sess, refused)
            else:
                item = self._enqueue(sess, req, content_type, body)
                if item is None:
                    return ERR_LIMIT
                if self.settings.end_to_end:
                    return self._wait_queued(req, sess, item)
            reply(req, 202, "Accepted")
            return OK

        if not type_accepted(content_type, types):
            reply(req, 415, "Unsupported Media Type", headers=[("Accept", ", ".join(types))])
            return ERR_PARAMS
        # The MSRP side is To; the MESSAGEs we generate go back to the MESSAGE's From.
        sess = GatewaySession(
            key=key, from_uri=req.to_uri, to_uri=req.from_uri, ruri=req.from_uri,
            origin=Origin.MESSAGE, content_types=types,
            created=now, last_send=now, last_message=now,
        )
        not_added = self._add(req, "msg_to_msrp", sess)
        if not_added is not None:
            return not_added
        item = self._enqueue(sess, req, content_type, body)
        if item is None:
            self.registry.remove(sess)
            sess.state = State.ENDED
            return ERR_LIMIT
        self.stats.sessions_created += 1
        try:
            sess.ua_session_id = self.ua.start(
                ua_types(types), req.from_uri, req.to_uri, req.ruri, _SessionHandler(self, sess)
            )
        except Exception as e:  # noqa: BLE001 - the UA's refusal becomes the MESSAGE's answer
            log.error("msg_to_msrp {key}: the UA could not start a session: {error}",
                      key=key, error=str(e))
            return self._ua_refused(req, sess, e)
        if sess.state is State.ENDED:  # failed synchronously; already reported by the event
            reply(req, 503, "Service Unavailable")
            return ERR_UA
        log.info("gateway session {key} opened by MESSAGE (UA session {sid})",
                 key=key, sid=sess.ua_session_id)
        if self.settings.end_to_end:
            return self._wait_queued(req, sess, item)
        reply(req, 202, "Accepted")
        return OK

    def _enqueue(self, sess: GatewaySession, req: Any, content_type: str,
                 body: bytes) -> QueuedBody | None:
        s = self.settings
        if len(sess.queue) >= s.max_queued_messages or \
                sess.queued_bytes + len(body) > s.max_queued_bytes:
            log.warn("gateway session {key}: queue full ({n} messages, {b} bytes) while the "
                     "MSRP side is set up", key=sess.key, n=len(sess.queue), b=sess.queued_bytes)
            reply(req, 503, "Service Unavailable", headers=[("Retry-After", str(RETRY_AFTER))])
            self.stats.messages_failed += 1
            return None
        item = QueuedBody(content_type, body, defer.Deferred())
        sess.queue.append(item)
        sess.queued_bytes += len(body)
        return item

    # -- end_to_end: the MESSAGE waits for the MSRP outcome (see delivery.py) --------------

    def _wait(self, req: Any, sess: GatewaySession) -> PendingAnswer:
        """The MESSAGE's answer now waits (bounded by delivery_timeout); the router must
        not answer it meanwhile, so the request is owned."""
        pending = PendingAnswer(req, sess.key, self.reactor, self.settings.delivery_timeout,
                                self._answer_timed_out, self._waiting.discard)
        pending.accept = sess.content_types
        self._waiting.add(pending)
        try:
            req.owned = True
        except AttributeError:
            pass
        return pending

    def _wait_queued(self, req: Any, sess: GatewaySession, item: QueuedBody) -> int:
        """A body queued while the session is set up: its MESSAGE waits for the set-up and
        then for the SEND (a failed set-up answers it from the INVITE's outcome)."""
        pending = self._wait(req, sess)
        pending.session, pending.item = sess, item
        item.result = pending
        return PENDING

    def _send_and_wait(self, req: Any, sess: GatewaySession, content_type: str,
                       body: bytes) -> int:
        """A body out as a SEND on an established session; its MESSAGE is answered from
        the SEND's outcome. A refusal on the spot is answered at once, as in hop mode."""
        try:
            d = self.ua.send(sess.ua_session_id, content_type, body,
                             failure_report="yes", success_report="no")
        except Exception as e:  # noqa: BLE001 - a refusal all the same
            return self._refuse_message(req, sess, (status_of(e), str(e)))
        refused = _refused_at_once(d)
        if refused is not None:
            return self._refuse_message(req, sess, refused)
        pending = self._wait(req, sess)
        d.addErrback(_send_failed, sess.key, self.stats).addCallback(pending.outcome)
        return PENDING if not pending.done else OK

    def _answer_timed_out(self, pending: PendingAnswer) -> None:
        """delivery_timeout passed: a body still queued is taken out and never sent (408);
        one already sent may still arrive (504: the gateway cannot tell)."""
        if pending.done:
            return
        sess, item = pending.session, pending.item
        if sess is not None and item is not None and item in sess.queue:
            sess.queue.remove(item)  # at most max_queued_messages long
            sess.queued_bytes -= len(item.body)
            self.stats.messages_failed += 1
            log.warn("gateway session {key}: MESSAGE answered 408: still queued after "
                     "{t} s while the MSRP side is set up; body dropped", key=pending.key,
                     t=self.settings.delivery_timeout)
            pending.answer(408, "Request Timeout")
            return
        log.warn("gateway session {key}: MESSAGE answered 504: no MSRP outcome within "
                 "{t} s", key=pending.key, t=self.settings.delivery_timeout)
        pending.answer(504, "Server Time-out")

    def _send(self, sess: GatewaySession, content_type: str, body: bytes) -> defer.Deferred[int]:
        """One queued body out as a SEND (its MESSAGE was answered already); fires the MSRP
        status (failures logged with the key, never raised)."""
        try:
            d = self.ua.send(sess.ua_session_id, content_type, body,
                             failure_report="yes", success_report="no")
        except Exception as e:  # noqa: BLE001
            d = defer.fail(e)
        result: defer.Deferred[int] = d.addErrback(_send_failed, sess.key, self.stats)
        return result

    def _send_now(self, sess: GatewaySession, content_type: str,
                  body: bytes) -> tuple[int, str] | None:
        """Hop mode: a MESSAGE body out as a SEND on an established session. Returns None
        when it is on its way (a later failure is logged with the key; end_to_end hangs the
        MESSAGE's answer on it instead, see `_send_and_wait`), or (code, comment) when the
        UA refused it on the spot: `ua.send` then returns an already failed Deferred (send
        queue full, not connected, over the peer's max-size), so the MESSAGE can still be
        told."""
        try:
            d = self.ua.send(sess.ua_session_id, content_type, body,
                             failure_report="yes", success_report="no")
        except Exception as e:  # noqa: BLE001 - a refusal all the same
            return (status_of(e), str(e))
        refused = _refused_at_once(d)
        if refused is not None:
            return refused
        d.addErrback(_send_failed, sess.key, self.stats)
        return None

    def _refuse_message(self, req: Any, sess: GatewaySession,
                        refused: tuple[int, str]) -> int:
        """Answer a MESSAGE whose SEND the UA refused at once: a bound hit (503, with
        Retry-After) or a body too large for the peer (413), never a 202 and a lost body."""
        code, comment = refused
        self.stats.messages_failed += 1
        if code == 413:
            log.warn("gateway session {key}: MESSAGE refused 413: {comment}", key=sess.key,
                     comment=comment)
            reply(req, 413, "Request Entity Too Large")
            return ERR_PARAMS
        log.warn("gateway session {key}: MESSAGE refused 503, SEND not accepted: {code} "
                 "{comment}", key=sess.key, code=code, comment=comment)
        reply(req, 503, "Service Unavailable", headers=[("Retry-After", str(RETRY_AFTER))])
        return ERR_LIMIT

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
            if isinstance(item.result, PendingAnswer):  # end_to_end: its MESSAGE waits
                item.result.item = item.result.session = None
                d.addCallback(item.result.outcome)
            elif item.result is not None:
                d.chainDeferred(item.result)


def _refused_at_once(d: defer.Deferred[int]) -> tuple[int, str] | None:
    """(code, comment) when `ua.send` returned an already failed Deferred (send queue
    full, not connected, over the peer's max-size); the failure is taken so nothing is
    left unhandled. None when the SEND is on its way (or already succeeded)."""
    if not d.called:
        return None
    failures: list[Failure] = []
    d.addErrback(failures.append)
    if not failures:
        return None
    error = failures[0].value
    return (status_of(error),
            str(getattr(error, "comment", None) or failures[0].getErrorMessage()))


def _send_failed(f: Failure, key: str, stats: GatewayCounters) -> int:
    stats.messages_failed += 1
    code = getattr(f.value, "code", None) or 500
    log.error("gateway session {key}: SEND failed: {code} {comment}", key=key,
              code=code, comment=getattr(f.value, "comment", None) or f.getErrorMessage())
    return int(code)
